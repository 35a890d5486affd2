"""The MLOps loop around the model: the SageMaker Pipeline (``mlops.pipeline``), the approval
Lambda (``mlops.lambda_function``), the CloudFormation template (``mlops/infra``), the
``informer-mlops`` command (``mlops.cli``), the local registry and the dashboard.

``mlops.lambda_function`` needs the standard library and boto3 only (the Lambda runtime);
``mlops.pipeline`` needs the SageMaker SDK v3 (``pip install "informer-mlops[aws]"``). Nothing
in ``informer`` or ``sagemaker_jobs`` imports this package.
"""
