"""The database: watch entries, the inventory, registered keys and the alert outbox.

:mod:`.sqlite` owns the SQLite file.
"""
