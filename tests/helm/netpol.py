"""A small evaluator of Kubernetes NetworkPolicy semantics (networking.k8s.io/v1).

Given rendered NetworkPolicies and endpoints (pods with namespace, labels and named
ports, or outside addresses), it answers whether a TCP/UDP connection src -> dst:port
is allowed: the source's egress policies and the destination's ingress policies must
both allow it, where a pod selected by no policy of a direction is not isolated in
that direction.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from chartlib import label_selector_matches


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None  # None: outside the cluster (only ipBlock peers match it)
    labels: dict = field(default_factory=dict, hash=False, compare=False)
    ports: dict = field(default_factory=dict, hash=False, compare=False)  # named ports of a pod
    ip: str = ""


def namespace_labels(namespace: str) -> dict:
    return {"kubernetes.io/metadata.name": namespace}


class Evaluator:
    def __init__(self, policies: list[dict]):
        self.policies = policies

    def _selecting(self, pod: Endpoint, direction: str) -> list[dict]:
        if pod.namespace is None:
            return []
        out = []
        for policy in self.policies:
            if policy["metadata"].get("namespace") != pod.namespace:
                continue
            spec = policy.get("spec", {})
            types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
            if direction not in types:
                continue
            if label_selector_matches(spec.get("podSelector") or {}, pod.labels):
                out.append(policy)
        return out

    @staticmethod
    def _peer_matches(peer: dict, policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            if not other.ip:
                return False
            ip = ipaddress.ip_address(other.ip)
            block = peer["ipBlock"]
            if ip not in ipaddress.ip_network(block["cidr"], strict=False):
                return False
            return not any(ip in ipaddress.ip_network(e, strict=False) for e in block.get("except", []))
        if other.namespace is None:
            return False
        if "namespaceSelector" in peer:
            if not label_selector_matches(peer["namespaceSelector"] or {}, namespace_labels(other.namespace)):
                return False
        elif other.namespace != policy_ns:
            return False
        if "podSelector" in peer:
            return label_selector_matches(peer["podSelector"] or {}, other.labels)
        return True

    @staticmethod
    def _port_matches(ports: list[dict] | None, dst: Endpoint, port: int, protocol: str) -> bool:
        if not ports:
            return True
        for p in ports:
            if p.get("protocol", "TCP") != protocol:
                continue
            want = p.get("port")
            if want is None:
                return True
            if isinstance(want, str):
                if dst.ports.get(want) == port:
                    return True
                continue
            end = p.get("endPort", want)
            if want <= port <= end:
                return True
        return False

    def _allows(self, pod: Endpoint, other: Endpoint, dst: Endpoint, port: int, protocol: str, direction: str) -> bool:
        policies = self._selecting(pod, direction)
        if not policies:
            return True
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in policies:
            for rule in policy["spec"].get(rules_key) or []:
                peers = rule.get(peers_key)
                if peers and not any(self._peer_matches(p, pod.namespace, other) for p in peers):
                    continue
                if self._port_matches(rule.get("ports"), dst, port, protocol):
                    return True
        return False

    def allowed(self, src: Endpoint, dst: Endpoint, port: int | str, protocol: str = "TCP") -> bool:
        if isinstance(port, str):
            port = dst.ports[port]
        egress = self._allows(src, dst, dst, port, protocol, "Egress")
        ingress = self._allows(dst, src, dst, port, protocol, "Ingress")
        return egress and ingress
