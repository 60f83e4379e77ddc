"""The bundled default model (default.pt) and its card (MODEL_CARD.md)."""
