"""The fine-tune engine: models, encoding, prefix cache, adapter, resize, session, export."""
