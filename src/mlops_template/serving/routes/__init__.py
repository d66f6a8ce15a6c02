"""One router per concern: predictions, the Open Inference Protocol, health and metadata."""
