"""Model import and the framework-free IR."""
