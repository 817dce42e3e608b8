#!/usr/bin/env python3
"""Derive the GrantwallAgentIdentity CRD from the GrantwallAccessPolicy CRD (itself KAN's XAccessPolicy v1alpha1
plus the OIDC source), so `parent`, `targetRefs` and the permission rules keep KAN's exact shape and validations.

Regenerate after regenerating the access-policy CRD: .venv/bin/python scripts/gen_grantwall_agent_identity_crd.py
"""
import copy
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
policy = yaml.safe_load((root / "crds" / "grantwall.io_grantwallaccesspolicies.yaml").read_text())
version = copy.deepcopy(policy["spec"]["versions"][0])
pspec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
rule = pspec["properties"]["rules"]["items"]

parent = copy.deepcopy(rule["properties"]["source"])
parent["description"] = ("The agent this identity acts for, as a KAN source (ServiceAccount, SPIFFE) or an OIDC "
                         "caller. The ephemeral identity never gets a grant the parent does not have on the same "
                         "target: the compiler refuses a widening, and the filter also checks the parent's grants "
                         "on every request.")
parent["required"] = ["type"]

permission = copy.deepcopy(rule)
del permission["properties"]["source"]
permission["description"] = ("A grant of the ephemeral identity: an XAccessPolicy rule without source (the source is "
                             "this identity). It must be provably narrower than a grant of the parent.")

permissions = copy.deepcopy(pspec["properties"]["rules"])
permissions["description"] = ("What the ephemeral identity may do on its targets; any rule matches. Every rule must "
                              "be covered by the parent's grants on each target (methods, tool/prompt names, "
                              "resource URIs, base protocol, HTTP conditions, CEL), or the compiler refuses it.")
permissions["minItems"] = 1
permissions["items"] = permission

target_refs = copy.deepcopy(pspec["properties"]["targetRefs"])
target_refs["description"] = ("The XBackends (group agentic.networking.x-k8s.io, kind XBackend) and A2A agents (group "
                              "grantwall.io, kind GrantwallA2AAgent) the permissions apply to; both kinds may be mixed.")
# A sub-agent may call tools and peer agents: unlike a policy, its targets may be of both kinds.
target_refs.pop("x-kubernetes-validations", None)

spec = {
    "description": "GrantwallAgentIdentitySpec defines an ephemeral sub-agent identity.",
    "type": "object",
    "required": ["parent", "token", "ttl", "targetRefs", "permissions"],
    "properties": {
        "parent": parent,
        "token": {
            "description": ("How the ephemeral agent is recognised: the issuer (a GrantwallIdentityProvider's "
                            "issuerUrl, tokenType OIDC) and subject (`sub`) of its short-lived token. The caller "
                            "is oidc://<issuer without https://>#<subject>."),
            "type": "object",
            "required": ["issuer", "subject"],
            "properties": {
                "issuer": {"type": "string", "pattern": "^https://[^?#\\s]+$", "maxLength": 512},
                "subject": {"type": "string", "minLength": 1, "maxLength": 255},
            },
        },
        "ttl": {
            "description": ("How long a token of this identity is usable, counted from its `iat` (tokens without "
                            "`iat` are refused). A request after min(exp, iat + ttl) is refused with "
                            "identity-expired (HTTP 401). Gateway API duration: 1h, 30m, 90s, 1m30s; 1s to 24h."),
            "type": "string",
            "pattern": "^([0-9]{1,5}(h|m|s)){1,3}$",
        },
        "maxRequests": {
            "description": ("Requests the gateway forwards for this identity (all of its tokens, all proxy workers) "
                            "before refusing it with identity-exhausted. Refused requests do not count. Omitted: "
                            "no budget."),
            "type": "integer",
            "minimum": 1,
            "maximum": 1000000000,
        },
        "targetRefs": target_refs,
        "permissions": permissions,
    },
}
version["schema"]["openAPIV3Schema"] = {
    "description": ("GrantwallAgentIdentity is an ephemeral agent identity: a sub-agent known by its short-lived "
                    "token, tied to a parent agent, with a lifetime (ttl), a request budget (maxRequests) and "
                    "permissions never wider than the parent's."),
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec,
    },
    "required": ["spec"],
}
version.pop("subresources", None)
version.pop("additionalPrinterColumns", None)
crd = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "grantwallagentidentities.grantwall.io"},
    "spec": {
        "group": "grantwall.io",
        "names": {"kind": "GrantwallAgentIdentity", "listKind": "GrantwallAgentIdentityList",
                  "plural": "grantwallagentidentities", "singular": "grantwallagentidentity",
                  "shortNames": ["gwaid"]},
        "scope": "Namespaced",
        "versions": [version],
    },
}
header = ("# Generated by scripts/gen_grantwall_agent_identity_crd.py from the GrantwallAccessPolicy CRD. "
          "Do not edit.\n")
out = root / "crds" / "grantwall.io_grantwallagentidentities.yaml"
out.write_text(header + yaml.safe_dump(crd, sort_keys=False, width=120))
print(out)
