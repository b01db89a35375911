"""Everything that speaks the Bitrix24 REST protocol: transport, envelope, errors, limits, client, emulator."""
