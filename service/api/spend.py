"""What HTTP callers may spend upstream: the chat models allowed and the completion-token cap."""

from __future__ import annotations

from ..config import Settings
from ..errors import NotAllowedError
from ..prompting import DEFAULT_MAX_COMPLETION_TOKENS


def checked_model(settings: Settings, model: str | None) -> str | None:
    """`model` if HTTP callers may use it (None: the server's own chat model, always allowed).

    Raises:
        NotAllowedError: a model outside IORAG_ALLOWED_MODELS, naming the allowed ones.
    """
    allowed = settings.allowed_model_ids()
    if model is None or allowed is None:
        return model
    permitted = allowed | {settings.resolved_chat_model()}
    if model not in permitted:
        raise NotAllowedError(
            f"model {model!r} is not allowed on this server; allowed: {', '.join(sorted(permitted))}",
            hint="the server's operator sets IORAG_ALLOWED_MODELS",
        )
    return model


def checked_completion_tokens(settings: Settings, asked: int | None) -> int | None:
    """The completion budget to use for an HTTP caller.

    Raises:
        NotAllowedError: `asked` is over IORAG_MAX_COMPLETION_TOKENS, naming the cap.
    """
    cap = settings.max_completion_tokens
    if asked is None:
        return cap if cap < DEFAULT_MAX_COMPLETION_TOKENS else None
    if asked > cap:
        raise NotAllowedError(
            f"max_completion_tokens {asked} is over this server's cap of {cap}",
            hint=f"ask for {cap} or fewer (IORAG_MAX_COMPLETION_TOKENS)",
        )
    return asked
