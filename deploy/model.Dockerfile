# A model image: one bundle, which deploy/k8s/deployment.yaml's init container copies into
# the pod. Build it with the bundle directory as the context:
#   docker build -f deploy/model.Dockerfile -t afm-serving/model:<version> runs/default
# It starts from the serving image's base, so a node that runs the server pulls no new layers
# but the bundle's.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
# model.onnx* and vocabulary.arrow*: a format-3 bundle's weights and vocabularies (an older
# bundle has neither file, and the patterns then copy nothing more)
COPY manifest.json model.onnx* vocabulary.arrow* /bundle/
# A volume first mounted here takes this owner, so the unprivileged copy can write to it.
RUN mkdir /models && chown 10001:10001 /models
USER 10001:10001
CMD ["ls", "-l", "/bundle"]
