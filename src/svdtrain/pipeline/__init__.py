"""The application: ``svdtrain run``'s experiment (config, stages, run folder, report, sweep,
demo, the cut probe), built on the library (``svdtrain.train``, ``surgery``, ``deploy``), which
never imports it."""
