"""What a Bitrix24 record means locally: config models, entity declarations, field mapping, tables."""
