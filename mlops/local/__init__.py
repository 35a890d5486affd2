"""The MLOps loop on one machine with no AWS: state directory, model registry, SageMaker stand-in,
pipeline runner."""
