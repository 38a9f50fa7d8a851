"""iorag's read path and faces: retrieval, prompts within budget, answers; HTTP, CLI, library.

    from service import RagService
    with RagService() as rag:
        print(rag.ask("What is the context length of Llama 3.3?").answer)
"""

from .answer import Answer, ContextReport, Usage
from .config import Settings
from .conversation import Turn
from .embeddings import Embeddings
from .errors import BudgetError, DocumentNotFoundError, ModelNotServedError, QueryError
from .rag import RagService

__all__ = [
    "Answer",
    "BudgetError",
    "ContextReport",
    "DocumentNotFoundError",
    "Embeddings",
    "ModelNotServedError",
    "QueryError",
    "RagService",
    "Settings",
    "Turn",
    "Usage",
]
