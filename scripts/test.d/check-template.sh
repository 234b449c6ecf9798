# Sourced by scripts/test: lints template.yaml with cfn-lint and `sam validate --lint`, both
# offline, from .venv-cfn (kept apart from moto's environment because SAM CLI pins older
# boto3 and pydantic releases). The invariants cfn-lint does not check for SAM functions
# (runtime, architecture, partial batch responses, visibility timeout) are asserted by
# tests/tests/aws_template.rs.

CFN_VENV="$ROOT/.venv-cfn"
CFN_LINT_VERSION="1.58.0"
SAM_CLI_VERSION="1.170.0"

if ! "$CFN_VENV/bin/cfn-lint" --version 2>/dev/null | grep -q "$CFN_LINT_VERSION" ||
  ! "$CFN_VENV/bin/sam" --version 2>/dev/null | grep -q "$SAM_CLI_VERSION"; then
  python3 -m venv "$CFN_VENV"
  "$CFN_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "cfn-lint==$CFN_LINT_VERSION" "aws-sam-cli==$SAM_CLI_VERSION"
fi

template_passed=0
template_failed=0
if "$CFN_VENV/bin/cfn-lint" template.yaml; then
  echo "ok - cfn-lint template.yaml"
  template_passed=$((template_passed + 1))
else
  echo "not ok - cfn-lint template.yaml"
  template_failed=$((template_failed + 1))
fi
# Offline and without an account: no telemetry, and a region so validation needs no lookup.
if SAM_CLI_TELEMETRY=0 AWS_REGION=us-east-1 "$CFN_VENV/bin/sam" validate --lint \
  --template-file template.yaml; then
  echo "ok - sam validate --lint"
  template_passed=$((template_passed + 1))
else
  echo "not ok - sam validate --lint"
  template_failed=$((template_failed + 1))
fi
printf '# pass %d\n# fail %d\n' "$template_passed" "$template_failed" >"$LOG_DIR/template.log"
[ "$template_failed" -eq 0 ]
