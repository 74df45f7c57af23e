"""The OpenAI-compatible API's domain: chat requests in, chat.completion(.chunk) out, OpenAI's errors.

Behind it is the same pipeline as /api/v1/stream (app/streams): this package only
translates. `parse_chat` turns a request into a NewStream (refusing what Relay does
not support by name), `ChunkRenderer` and `completion` turn what a stream reader
sees into OpenAI's answers, and `openai_error` renders every error under /v1.
"""

from .chat import ChatRequest, parse_chat
from .errors import openai_error
from .render import ChunkRenderer, completion, model_list, model_object

__all__ = ["ChatRequest", "ChunkRenderer", "completion", "model_list", "model_object", "openai_error", "parse_chat"]
