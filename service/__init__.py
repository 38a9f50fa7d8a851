"""iorag's read path and faces: retrieval, prompts within budget, answers; HTTP, CLI, library."""
