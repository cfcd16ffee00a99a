# A py-setowire 0.1.0 peer in a container, driven over stdin/stdout by
# tests/interop/setowire_driver.py (`docker run -i`). Built by tests/support/docker.rs on the
# local Debian base, with the wheels pip downloaded on the host: inside a container HTTPS to
# PyPI may fail certificate verification, while Debian's archive is plain HTTP.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY wheels /wheels
RUN python3 -m venv /opt/py \
    && /opt/py/bin/pip install --no-input --no-index --find-links /wheels py-setowire==0.1.0
COPY setowire_driver.py /driver/setowire_driver.py
# The swarm announces the container's own address as its LAN address.
ENTRYPOINT ["/bin/sh", "-c", "exec /opt/py/bin/python -I -u /driver/setowire_driver.py --local-ip \"$(hostname -i | cut -d ' ' -f 1)\" \"$@\"", "pypeer"]
