"""Secrets are masked before anything is logged: URI and libpq passwords, and keys named as secrets."""

from __future__ import annotations

from ai_trading.secrets import MASK, mask_override, mask_secrets, mask_text


def test_mask_text_hides_uri_and_keyword_passwords_and_keeps_the_rest() -> None:
    assert mask_text("postgresql+psycopg://u:s3cret@h:5432/db") == f"postgresql+psycopg://u:{MASK}@h:5432/db"
    assert mask_text("oms.dsn=postgresql://u:p%40ss@h/db x") == f"oms.dsn=postgresql://u:{MASK}@h/db x"
    assert mask_text("host=h user=u password=s3cret dbname=oms") == f"host=h user=u password={MASK} dbname=oms"
    assert mask_text("sqlite:///oms.db") == "sqlite:///oms.db"
    assert mask_text("http://127.0.0.1:5000") == "http://127.0.0.1:5000"  # a port is not a password


def test_mask_secrets_walks_nested_config_and_masks_secret_named_keys() -> None:
    config = {"oms": {"dsn": "postgresql://u:s3cret@h/db"}, "alerts": {"webhook_token": "t0ken", "url": "x"},
              "list": ["mysql://a:b@c/d"], "api_key": None, "seed": 3}
    masked = mask_secrets(config)
    assert masked == {"oms": {"dsn": f"postgresql://u:{MASK}@h/db"}, "alerts": {"webhook_token": MASK, "url": "x"},
                      "list": [f"mysql://a:{MASK}@c/d"], "api_key": None, "seed": 3}
    assert config["oms"]["dsn"].endswith("s3cret@h/db")  # the input is not changed


def test_mask_override_masks_secret_named_keys_and_passwords_in_values() -> None:
    assert mask_override("+alerts.webhook_token=abc123") == f"+alerts.webhook_token={MASK}"
    assert mask_override("oms.dsn=postgresql://u:pw@h/db") == f"oms.dsn=postgresql://u:{MASK}@h/db"
    assert mask_override("seed=3") == "seed=3"
    assert mask_override("data.symbols=[NVDA,ORCL]") == "data.symbols=[NVDA,ORCL]"
