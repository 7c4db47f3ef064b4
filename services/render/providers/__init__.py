"""Render providers: one interface (`RenderProvider`), several back-ends."""

from services.render.providers.base import RenderProvider, decode_image, encode_png

__all__ = ["RenderProvider", "decode_image", "encode_png"]
