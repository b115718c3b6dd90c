"""The frozen-embedding family: an offline sentence encoder, its disk cache, hand-made features, heads.

``encoder`` (texts -> pooled vectors), ``cache`` (vectors on disk, keyed by encoder and text),
``features`` (lengths, counts, asker, category, host, similarities), ``heads`` (ridge, MLP) and
``model`` (``EmbeddingModel`` behind the shared ``Model`` interface).
"""

from questlab.models.embedding.model import EmbeddingModel, EmbeddingParams

__all__ = ["EmbeddingModel", "EmbeddingParams"]
