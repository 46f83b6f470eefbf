"""selfalign: self-improving LLM post-training with little human supervision."""

__version__ = "0.1.0"
