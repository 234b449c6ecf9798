# Sourced by scripts/test: installs moto into .venv-moto, starts moto_server on a free loopback
# port, and exports the AWS SDK's standard variables so the AWS tests reach it (and only it).
# The tests in tests/tests/aws_*.rs run whenever REVISIT_TEST_MOTO is set, and then they fail
# if moto is unreachable. Only when it is unset (a plain `cargo test`) do they skip, with a
# printed notice.

MOTO_VERSION="5.2.5"
MOTO_VENV="$ROOT/.venv-moto"

if ! "$MOTO_VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" \
  2>/dev/null; then
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

MOTO_PORT="$("$MOTO_VENV/bin/python" -c \
  'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$LOG_DIR/moto.out" 2>&1 &
MOTO_PID=$!
on_exit "kill $MOTO_PID"

moto_ready=false
for _ in $(seq 1 100); do
  if curl --silent --fail --max-time 1 "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null; then
    moto_ready=true
    break
  fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if [ "$moto_ready" != true ]; then
  echo "moto_server did not answer on 127.0.0.1:$MOTO_PORT within 10 s; its output:" >&2
  cat "$LOG_DIR/moto.out" >&2
  return 1
fi
echo "moto $MOTO_VERSION listening on 127.0.0.1:$MOTO_PORT (pid $MOTO_PID)"

export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_REGION="us-east-1"
export AWS_ACCESS_KEY_ID="test"
export AWS_SECRET_ACCESS_KEY="test"
# Without this the SDK's credential chain could try the instance-metadata address, which is
# not on loopback; static credentials above make it unnecessary anyway.
export AWS_EC2_METADATA_DISABLED="true"
export REVISIT_TEST_MOTO="1"
