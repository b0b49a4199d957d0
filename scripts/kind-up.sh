#!/usr/bin/env bash
# Try Argus on a local kind cluster: create the cluster, build and load both images, install the
# chart, apply the laptop example, and send one prompt through Envoy.
# Needs docker (with a running engine), kind, kubectl and helm on PATH.
# NOT exercised on the development machines of this project (they have no Docker engine).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-argus}
NAMESPACE=${NAMESPACE:-argus}
TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' Chart.yaml)
CONTROLPLANE=ghcr.io/argus-t2i/controlplane:$TAG
WORKER=ghcr.io/argus-t2i/worker:$TAG

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is not on PATH" >&2; exit 1; }
done

echo "[kind-up] cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER" >/dev/null

echo "[kind-up] images (the worker image is large: it starts from the Triton server image)"
docker build -f operator/Dockerfile -t "$CONTROLPLANE" .
docker build -f worker_image/Dockerfile -t "$WORKER" .
kind load docker-image --name "$CLUSTER" "$CONTROLPLANE" "$WORKER"

# Worker pods request nvidia.com/gpu; kind nodes have no GPU, so advertise a few fake ones
# (the tiny model runs on CPU). Remove this on a cluster with real GPUs.
for node in $(kubectl get nodes -o name); do
  kubectl patch "$node" --subresource=status --type=json \
    -p '[{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "4"}]' >/dev/null
done

echo "[kind-up] helm install (release argus: its Prometheus is http://argus-prometheus:9090, the T2IService default)"
helm upgrade --install argus . --namespace "$NAMESPACE" --create-namespace \
  --set router.replicas=1 --set router.resources.requests.cpu=200m --wait --timeout 10m

echo "[kind-up] example T2IService"
kubectl -n "$NAMESPACE" apply -f manifests/examples/laptop.yaml
kubectl -n "$NAMESPACE" wait --for=condition=Ready t2iservice/tiny --timeout=10m
kubectl -n "$NAMESPACE" get t2i,deploy,svc

echo "[kind-up] one prompt through Envoy"
kubectl -n "$NAMESPACE" port-forward svc/argus-router 18000:80 >/dev/null &
pf=$!
trap 'kill $pf' EXIT
sleep 3
KEY=$(kubectl -n "$NAMESPACE" get secret argus-api-key -o jsonpath='{.data.api-key}' | base64 -d)
curl -sf localhost:18000/v1/images/generations -H "Authorization: Bearer $KEY" \
  -d '{"prompt": "a red bicycle", "size": "64x64", "seed": 1}' | head -c 300; echo
echo "[kind-up] done; delete with: kind delete cluster --name $CLUSTER"
