"""An OpenID Connect issuer and an OAuth 2.0 token endpoint for the auth tests, on 127.0.0.1.

Serves what the specifications define and nothing more:
- `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0): `issuer`, `jwks_uri`,
  `token_endpoint`;
- `/jwks` (RFC 7517): the public RSA and EC keys, with key ids;
- `/token` (RFC 6749 §4.4, client credentials): `grant_type=client_credentials`, the client
  authenticated by HTTP Basic (§2.3.1) or by `client_id`/`client_secret` in the form; answers
  §5.1 JSON (`access_token`, `token_type`, `expires_in`) or a §5.2 error (`invalid_client`,
  `unsupported_grant_type`) with 400/401. The access token is a JWT signed with PyJWT
  (RS256), for the `audience` form parameter;
- `/mint` (test only): a JWT with the claims and key given in the query, to try expired,
  foreign and badly signed tokens;
- `/stats`: how many tokens `/token` issued.
Prints its port on stdout once listening.
"""
import base64
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CLIENT_ID = sys.argv[1] if len(sys.argv) > 1 else "ferrotel-agent"
CLIENT_SECRET = sys.argv[2] if len(sys.argv) > 2 else "client-s3cret"
TOKEN_TTL = int(sys.argv[3]) if len(sys.argv) > 3 else 3600

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
# Not in the key set: signs tokens that must be refused.
FOREIGN_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
issued = 0
lock = threading.Lock()


def jwk(key, kid):
    d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()) if isinstance(key, rsa.RSAPrivateKey)
                   else jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    d.update(kid=kid, use="sig")
    return d


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def issuer(self):
        return f"http://127.0.0.1:{self.server.server_port}"

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def sign(self, claims, kid="rsa-1", alg="RS256"):
        key = {"rsa-1": RSA_KEY, "ec-1": EC_KEY, "foreign": FOREIGN_KEY}[kid]
        header_kid = "rsa-1" if kid == "foreign" else kid
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": header_kid})

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == "/.well-known/openid-configuration":
            iss = self.issuer()
            return self.reply(200, {"issuer": iss, "jwks_uri": iss + "/jwks", "token_endpoint": iss + "/token",
                                    "id_token_signing_alg_values_supported": ["RS256", "ES256"]})
        if u.path == "/jwks":
            return self.reply(200, {"keys": [jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1")]})
        if u.path == "/stats":
            return self.reply(200, {"issued": issued})
        if u.path == "/mint":
            q = dict(urllib.parse.parse_qsl(u.query))
            now = int(time.time())
            claims = {"iss": q.get("iss", self.issuer()), "aud": q.get("aud", "ferrotel"), "sub": q.get("sub", "svc"),
                      "iat": now, "exp": now + int(q.get("ttl", "600")), "groups": ["team-a", "team-b"],
                      "email": q.get("sub", "svc") + "@example.com"}
            tok = self.sign(claims, q.get("kid", "rsa-1"), q.get("alg", "RS256"))
            data = tok.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        global issued
        if urllib.parse.urlparse(self.path).path != "/token":
            return self.reply(404, {"error": "not_found"})
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return self.reply(400, {"error": "invalid_request"})
        n = int(self.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            raw = base64.b64decode(auth[6:]).decode()
            u, _, p = raw.partition(":")
            cid, secret = urllib.parse.unquote_plus(u), urllib.parse.unquote_plus(p)
        if (cid, secret) != (CLIENT_ID, CLIENT_SECRET):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="token"')
            body = json.dumps({"error": "invalid_client"}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        if form.get("grant_type") != "client_credentials":
            return self.reply(400, {"error": "unsupported_grant_type"})
        now = int(time.time())
        claims = {"iss": self.issuer(), "aud": form.get("audience", "ferrotel"), "sub": cid, "iat": now,
                  "exp": now + TOKEN_TTL, "scope": form.get("scope", ""), "groups": ["agents"]}
        with lock:
            issued += 1
        self.reply(200, {"access_token": self.sign(claims), "token_type": "bearer", "expires_in": TOKEN_TTL})


if __name__ == "__main__":
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(srv.server_port, flush=True)
    srv.serve_forever()
