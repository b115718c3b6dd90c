"""Fine-tuned transformer cross-encoders: inputs, network, training loop, and the ``Model`` subclass."""

from questlab.models.transformer.model import TransformerModel, TransformerParams

__all__ = ["TransformerModel", "TransformerParams"]
