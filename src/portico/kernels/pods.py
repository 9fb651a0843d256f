"""Portico's Kubernetes provisioner: gateway_provisioners' kubernetes-provisioner, whose API calls
(the pod's status at every poll and launch tick, its deletion) run off the event loop here
(containers.ContainerFixes).  docs/kubernetes.md deploys Portico with it."""

from __future__ import annotations

from gateway_provisioners.k8s import KubernetesProvisioner as StockKubernetesProvisioner

from .containers import ContainerFixes


class KubernetesProvisioner(ContainerFixes, StockKubernetesProvisioner):
    """gateway_provisioners' kubernetes-provisioner, fixed (see containers.py)."""
