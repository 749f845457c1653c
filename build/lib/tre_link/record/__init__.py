"""Record: the run's figures (report), MLflow tracking and registry, charts, evaluation, reproduction."""
