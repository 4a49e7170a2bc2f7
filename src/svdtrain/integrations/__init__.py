"""Integrations with optional libraries (imported on use, never by ``import svdtrain``)."""
