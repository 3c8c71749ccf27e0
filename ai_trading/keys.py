"""Manifest signing keys: ``python -m ai_trading.keys generate|show|trust|list``.

An operator tool (argparse, no Hydra): it reads no config group and writes only key files and the keyring.
Private keys are written to files (mode 0600) and never printed; only public keys and key ids are.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.keys import (
    HMAC_KEY_ENV,
    HOME_ENV,
    SIGNING_KEY_ENV,
    Keyring,
    dev_key_path,
    generate_key_file,
    keyring_path,
    load_signer,
    parse_public_key,
    public_key_b64,
)
from ai_trading.artifacts.signing import ED25519, Ed25519Signer
from ai_trading.errors import AiTradingError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ai_trading.keys",
        description=f"Ed25519 keys that sign model manifests. The signing key is the file named by {SIGNING_KEY_ENV} "
                    f"(or the HMAC secret in {HMAC_KEY_ENV} with signing.algorithm=hmac-sha256); without it a local "
                    f"development key is used. Keyring: ${HOME_ENV}/keyring.json (default "
                    "~/.config/ai_trading/keyring.json).",
        epilog="Production: `generate --out /secure/signing.key`, set AI_TRADING_SIGNING_KEY=/secure/signing.key "
               "where models are trained, `trust <public key>` on every machine that loads them, and "
               "signing.refuse_dev_keys=true.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="make an Ed25519 key pair; print its public key and key id")
    gen.add_argument("--out", type=Path, required=True, help="file for the private key (created 0600; never "
                     "overwritten)")
    gen.add_argument("--trust", action="store_true", help="also add the public key to this machine's keyring")
    gen.add_argument("--label", default="generated key", help="label of the keyring entry (with --trust)")
    sub.add_parser("show", help="the key id and public key of the key this machine signs with")
    trust = sub.add_parser("trust", help="add a public key to the trusted keyring")
    trust.add_argument("public_key", help="the public key in base64, or a file holding it")
    trust.add_argument("--label", required=True, help="who owns the key (shown when it verifies a manifest)")
    sub.add_parser("list", help="the trusted keyring")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate":
            signer = generate_key_file(args.out)
            if args.trust:
                Keyring.load().trust(signer.public_key, args.label)
            print(f"private key: {args.out} (mode 0600; set {SIGNING_KEY_ENV}={args.out})")
            print(f"public key:  {public_key_b64(signer.public_key)}")
            print(f"key id:      {signer.key_id}")
        elif args.command == "show":
            config = SigningConfig.default()
            if config.algorithm == ED25519 and not os.environ.get(SIGNING_KEY_ENV) and not dev_key_path().exists():
                print(f"no signing key yet: set {SIGNING_KEY_ENV} to a key file made by `python -m ai_trading.keys "
                      f"generate --out <file>`, or let the first training job create a development key at "
                      f"{dev_key_path()}")
                return 0
            current = load_signer(config)
            print(f"algorithm:   {current.algorithm}")
            print(f"key id:      {current.key_id}" + (" (development key)" if current.dev else ""))
            if isinstance(current, Ed25519Signer):
                print(f"public key:  {public_key_b64(current.public_key)}")
        elif args.command == "trust":
            source = Path(args.public_key)
            text = source.read_text() if source.is_file() else args.public_key
            entry = Keyring.load().trust(parse_public_key(text), args.label)
            print(f"trusted key id {entry.key_id} ({entry.label}) in {keyring_path()}")
        else:
            for entry in Keyring.load().keys.values():
                print(f"{entry.key_id}  {public_key_b64(entry.public_key)}  {entry.label}"
                      + ("  [dev]" if entry.dev else ""))
    except AiTradingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
