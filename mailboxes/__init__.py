"""Mail store and directory: schema, accounts, folders, messages, blobs, search, partitions."""
