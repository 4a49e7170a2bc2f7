"""Moved to :mod:`svdtrain.export` (the exporter depends on the model zoo; the deploy-time
modules here depend on nothing). This name warns and forwards, for code of earlier releases."""

import warnings

from svdtrain.export import EXPORT_FILES, export_compact, load_compact  # noqa: F401

warnings.warn("svdtrain.deploy.export moved to svdtrain.export: import export_compact and load_compact from there",
              DeprecationWarning, stacklevel=2)
