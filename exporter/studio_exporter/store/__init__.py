"""The exporter's durable state behind narrow protocols, with one implementation per database.

``protocols`` says what the rest of the exporter may ask of a store; the embedded SQLite store
(``studio_exporter.store.sqlite``, the default) and the PostgreSQL store (``store.postgres``) both
satisfy it, and ``tests/test_store_contract.py`` runs the same cases against each.
"""
