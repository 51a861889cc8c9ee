#!/usr/bin/env bash
# Installs an MLflow tracking server for track's tests (mlflow server,
# SQLite backend) into its own virtual environment outside the repo, and
# prints the path of its `mlflow` command. finetune itself never needs
# Python: it talks to any MLflow server over its REST API.
#
#   scripts/install-mlflow.sh            # prints e.g. /root/.cache/finetune/mlflow/bin/mlflow
#   FINETUNE_MLFLOW_VENV=/some/dir scripts/install-mlflow.sh
#
# Every version is pinned below (mlflow and what it needs, as pip resolved
# them) and installed with --no-deps, so what is installed is exactly this
# list. A second run with the same pins does nothing. Needs python3 (3.10 or
# newer) with venv.
set -euo pipefail
venv="${FINETUNE_MLFLOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/finetune/mlflow}"

pins=(
  aiohappyeyeballs==2.7.1
  aiohttp==3.14.5
  aiosignal==1.4.0
  alembic==1.20.1
  annotated-doc==0.0.7
  annotated-types==0.8.0
  anyio==4.16.0
  attrs==26.1.0
  blinker==1.9.0
  cachetools==7.3.3
  certifi==2026.10.19.post1
  cffi==2.1.1
  charset-normalizer==3.5.3
  click==8.5.1
  cloudpickle==3.1.3
  contourpy==1.3.3
  cryptography==50.0.2
  cycler==0.12.1
  databricks-sdk==0.167.0
  docker==7.2.0
  fastapi==0.165.0
  Flask==3.1.3
  flask-cors==6.0.5
  fonttools==4.68.0
  frozenlist==1.8.0
  gitdb==4.0.12
  GitPython==3.2.1
  google-auth==2.63.0
  graphene==3.4.3
  graphql-core==3.2.14
  graphql-relay==3.2.0
  gunicorn==26.2.0
  h11==0.16.0
  huey==3.5.4
  idna==3.21
  importlib_metadata==9.1.0
  itsdangerous==2.2.0
  Jinja2==3.1.6
  joblib==1.6.0
  kiwisolver==1.5.1
  Mako==1.4.3
  MarkupSafe==3.0.4
  matplotlib==3.11.2
  mlflow==3.17.2
  mlflow-skinny==3.17.2
  mlflow-tracing==3.17.2
  multidict==7.2.1
  narwhals==2.29.0
  numpy==2.4.6
  opentelemetry-api==1.45.2
  opentelemetry-proto==1.45.2
  opentelemetry-sdk==1.45.2
  opentelemetry-semantic-conventions==0.66b2
  packaging==26.4
  pandas==3.1.1
  pillow==13.0.0
  prettytable==3.19.0
  propcache==0.5.4
  protobuf==7.36.2
  pyarrow==25.0.1
  pyasn1==0.6.5
  pyasn1_modules==0.4.2
  pycparser==3.12
  pydantic==2.14.4
  pydantic_core==2.50.5
  pyparsing==3.3.3
  python-dateutil==2.9.0.post0
  python-dotenv==1.2.4
  PyYAML==6.0.4
  requests==2.34.2
  scikit-learn==1.9.1
  scipy==1.17.1
  six==1.17.0
  skops==0.16.0
  smmap==5.0.3
  SQLAlchemy==2.1.9
  sqlparse==0.6.1
  starlette==1.10.0
  threadpoolctl==3.8.0
  typing-inspection==0.4.5
  typing_extensions==4.16.0
  urllib3==2.8.0
  uvicorn==0.55.0
  wcwidth==0.9.4
  Werkzeug==3.1.9
  yarl==1.25.1
  zipp==4.1.2
)
stamp="$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-16)"

if [ -x "$venv/bin/mlflow" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$stamp" ]; then
  echo "$venv/bin/mlflow"
  exit 0
fi

start=$(date +%s)
py="${PYTHON:-python3}"
"$py" -m venv --clear "$venv" >&2
"$venv/bin/python" -m pip install -q --no-deps --disable-pip-version-check "${pins[@]}" >&2
# Prove the server's command loads before declaring it installed.
"$venv/bin/mlflow" server --help >/dev/null
echo "$stamp" >"$venv/.pins"
echo "mlflow: $("$venv/bin/mlflow" --version) installed in $(( $(date +%s) - start ))s" >&2
echo "$venv/bin/mlflow"
