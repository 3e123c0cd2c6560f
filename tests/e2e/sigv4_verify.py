"""Checks an AWS Signature Version 4 with botocore, the AWS SDK for Python's own signer.

Reads one request as JSON on stdin ({method, url, headers, body, secret, token, region,
service}), signs it again with botocore at the request's own X-Amz-Date and prints `ok` when
the Authorization header is the one botocore computes, else what botocore expected.
"""

import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

r = json.load(sys.stdin)
headers = {k: v for k, v in r["headers"].items() if k.lower() != "authorization"}
req = AWSRequest(method=r["method"], url=r["url"], headers=headers, data=r.get("body", ""))
access_key = r["headers"]["authorization"].split("Credential=")[1].split("/")[0]
signer = SigV4Auth(Credentials(access_key, r["secret"], r.get("token")), r["service"], r["region"])
req.context["timestamp"] = r["headers"]["x-amz-date"]
canonical = signer.canonical_request(req)
signature = signer.signature(signer.string_to_sign(req, canonical), req)
scope = signer.credential_scope(req)
expected = (
    f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
    f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(req))}, Signature={signature}"
)
print("ok" if expected == r["headers"]["authorization"] else f"expected {expected}")
