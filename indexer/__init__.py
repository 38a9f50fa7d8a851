"""iorag's write path and shared core: documents -> chunks -> embeddings -> vector store."""
