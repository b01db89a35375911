"""A Bitrix24-compatible REST server: state, method handlers, WSGI app, seeded-portal generator."""
