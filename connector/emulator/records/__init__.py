"""CRM records of the emulator (leads, deals, contacts, companies): declarations, storage rules, views.

Legacy ``crm.{lead,deal,contact,company}.*`` and the universal ``crm.item.*`` (handlers in
``connector/emulator/methods/``) read and write the same records in ``portal.records`` (legacy
UPPER_CASE names, values typed exactly as crm.*.list returns them). One field table per entity
(``fields.ENTITIES``) declares each field's type, title, flags and its crm.item camelCase name, so
both APIs and ``crm.*.fields`` come from one declaration.

Modules: ``fields`` (declarations), ``userfields`` (UF_CRM_* definitions and values), ``values``
(how a written value is stored and how crm.item types it), ``index`` (sorted record IDs for keyset
pages), ``write`` (add / update / delete with the stage rules), ``history`` (stage history rows),
``views`` (what get/list return), ``params`` (ids, fields and error wording of the methods).

Rules reproduced (sources in the shared notes ``bitrix24-rest.md`` §8, §9 and
``bitrix24-history-and-funnels.md`` §2):

- add returns the integer id, update/delete ``true``; unknown and read-only fields are ignored;
  errors use the empty code with HTTP 400 ("ID is not defined or invalid.", "Not found",
  "Parameter 'fields' must be array.", ``Invalid value for the "Currency" field``).
- deals: CATEGORY_ID defaults to 0 (or the pipeline of a prefixed STAGE_ID) and is immutable
  through crm.deal.update, which also ignores a STAGE_ID of another pipeline; only
  ``crm.item.update`` with ``categoryId`` moves a deal (TYPE_ID 5 history row and
  ``ONCRMDEALMOVETOCATEGORY``). An unknown stage/status is refused with the documented
  "Invalid value for ... field" wording (crm.item: ``CRM_FIELD_ERROR_VALUE_NOT_VALID``) [inferred].
- stage history rows exactly as crm.stagehistory.list returns them (ints); a deal's rows are
  listed only for its current pipeline and a deleted record's rows disappear. A portal made with
  ``history="legacy"`` also drops a final (won/lost) row when the record moves on from it.
- multi-fields (PHONE, EMAIL, WEB, IM): ID + VALUE changes an item, ID + DELETE=Y or an empty
  VALUE deletes it, an item without ID is appended, omitted items stay.
- CONTACT_IDS (deals) and COMPANY_IDS (contacts) are kept on the record but, as documented, never
  returned by the legacy get/list (crm.item returns them as ``contactIds``/``companyIds``).
- LEAD_ID of deals/contacts/companies is writable here (crm.item.add documents ``leadId``), so
  a seeded portal can link converted leads through either API.
- a write made with ``auth_connector`` is not queued for the offline bindings with that same key
  (events/offline-events.md, "How to avoid cycles"); other bindings still get it.
"""
