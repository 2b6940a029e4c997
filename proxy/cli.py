"""`cutover`: the one console script, with a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxy import config, control_cli, redis_client
from proxy.config import ConfigError
from proxy.rollback import RollbackRules, Thresholds
from proxy.security import TlsFiles, UpstreamSecurity
from proxy.server import ProxySettings
from shadow import cli as shadow_cli
from translators.bridge import TranslationConfig

MIN_ADMIN_TOKEN = 16


def add_proxy_flags(
    parser: argparse.ArgumentParser, *, listen: str, admin: str | None, log_level: str, profile: int
) -> None:
    config.add(parser, "--listen", config.host_port, config.host_port(listen), "charger-facing HOST:PORT")
    config.add(
        parser,
        "--redis-url",
        config.redis_url,
        None,
        "Redis URL; without it an embedded redis-server is started",
    )
    config.add(
        parser,
        "--admin-listen",
        config.host_port,
        config.host_port(admin) if admin else None,
        "HOST:PORT of /metrics and /healthz",
    )
    config.add(parser, "--call-timeout", config.positive_float, 30.0, "seconds a peer has to answer a CALL")
    config.add(parser, "--ping-interval", config.positive_float, 20.0, "WebSocket ping interval, seconds")
    config.add(parser, "--max-frame-bytes", config.positive_int, 256 * 1024, "largest accepted frame")
    config.add(
        parser, "--state-durability", config.choice("available", "strict"), "available",
        "while Redis cannot take a station's state: available (frames go on, the state is written once Redis is "
        "back) or strict (the charger is closed with 1013 and queues until Redis is back)",
    )  # fmt: skip
    config.add(
        parser,
        "--long-id-token",
        config.choice("reject", "alias"),
        "reject",
        "2.0.1 idTokens over 20 characters: reject with a CALLERROR or send a 20-char alias",
    )
    config.add(parser, "--log-level", config.choice("DEBUG", "INFO", "WARNING", "ERROR"), log_level, "log level")
    config.add(
        parser, "--security-profile", config.security_profile, profile,
        "OCPP security profile of stations without their own: 1 ws+Basic, 2 wss+Basic, 3 wss+client cert",
    )  # fmt: skip
    config.add(parser, "--tls-cert", config.readable_file, None, "server certificate (PEM); makes --listen wss")
    config.add(parser, "--tls-key", config.readable_file, None, "server private key (PEM)")
    config.add(parser, "--client-ca", config.readable_file, None, "CA(s) of charging-station certificates (PEM)")
    config.add(parser, "--crl", config.readable_file, None, "revocation list of station certificates (PEM)")
    config.add(parser, "--client-cert-organization", str, None, "required O of station certificates")
    config.add(
        parser, "--client-cert-identity", config.choice("station-id", "mapped"), "station-id",
        "whom a station certificate's CN names: the station id, or the value SET at cutover:cert-cn:{<station>}",
    )  # fmt: skip
    config.add(parser, "--metrics-listen", config.host_port, None, "HOST:PORT of /metrics and /healthz alone")
    config.add(parser, "--handshake-timeout", config.positive_float, 10.0, "seconds for TLS + WebSocket handshake")
    config.add(parser, "--native-url", config.ws_url, None, "the new 2.0.1 CSMS cut-over stations go to ({station})")
    config.add(parser, "--auto-rollback", config.choice("on", "off"), "on", "automatic rollback rules")
    config.add(
        parser, "--rollback-unreachable-seconds", config.positive_float, 30.0,
        "roll a station back when the new CSMS stays unreachable this long",
    )  # fmt: skip
    config.add(parser, "--rollback-error-rate", config.positive_float, 0.2, "roll back above this CALLERROR share")
    config.add(parser, "--rollback-window", config.positive_int, 20, "last CALLs the error share is taken over")
    config.add(
        parser, "--rollback-tls-failures", config.positive_int, 3,
        "roll a station back after this many failed TLS handshakes in a row with the new CSMS",
    )  # fmt: skip
    config.add(parser, "--native-ca", config.readable_file, None, "CA(s) to verify the new CSMS's wss certificate")
    config.add(parser, "--native-client-cert", config.readable_file, None, "client certificate toward the new CSMS")
    config.add(parser, "--native-client-key", config.readable_file, None, "its private key")
    config.add(parser, "--legacy-ca", config.readable_file, None, "CA(s) to verify the legacy CSMS's wss certificate")
    config.add(parser, "--legacy-client-cert", config.readable_file, None, "client certificate toward the legacy")
    config.add(parser, "--legacy-client-key", config.readable_file, None, "its private key")
    config.add(
        parser, "--legacy-client-cert-dir", config.readable_dir, None,
        "per-station client certificates toward the legacy (<station>.pem, <station>.key)",
    )  # fmt: skip
    config.add(
        parser, "--legacy-auth", config.choice("none", "forward", "password"), "none",
        "HTTP Basic toward the legacy: none, the charger's own (forward), or --legacy-password-file's",
    )  # fmt: skip
    config.add(parser, "--legacy-password-file", config.readable_file, None, "the password for --legacy-auth password")
    config.add(
        parser, "--admin-token-file", config.readable_file, None,
        "file holding the admin API's bearer token (or set CUTOVER_ADMIN_TOKEN); without one the API is off",
    )  # fmt: skip


def admin_token(values: dict[str, Any]) -> str | None:
    """The admin API token, from its file or CUTOVER_ADMIN_TOKEN; never from the command line."""
    path = values["admin_token_file"]
    token = path.read_text().strip() if path is not None else os.environ.get("CUTOVER_ADMIN_TOKEN")
    if token is not None and len(token) < MIN_ADMIN_TOKEN:
        source = "--admin-token-file" if path is not None else "CUTOVER_ADMIN_TOKEN"
        raise ConfigError(f"{source}: the admin token must be at least {MIN_ADMIN_TOKEN} characters")
    return token


def tls_files(values: dict[str, Any]) -> TlsFiles | None:
    """The TLS material the flags name, checked for consistency (ConfigError naming the flag)."""
    cert, key, profile = values["tls_cert"], values["tls_key"], values["security_profile"]
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key (CUTOVER_TLS_CERT, CUTOVER_TLS_KEY) go together")
    if profile >= 2 and cert is None:
        raise ConfigError(f"--security-profile {profile} needs --tls-cert and --tls-key: profiles 2 and 3 are wss")
    if profile == 3 and values["client_ca"] is None:
        raise ConfigError("--security-profile 3 needs --client-ca: the CA that signs station certificates")
    if cert is None:
        return None
    return TlsFiles(cert, key, values["client_ca"], values["crl"])


def upstream(values: dict[str, Any]) -> UpstreamSecurity:
    """The upstream TLS and credentials the flags name (ConfigError naming the flag when inconsistent)."""
    if (values["legacy_client_cert"] is None) != (values["legacy_client_key"] is None):
        raise ConfigError("--legacy-client-cert and --legacy-client-key go together")
    password = None
    if values["legacy_auth"] == "password":
        if values["legacy_password_file"] is None:
            raise ConfigError("--legacy-auth password needs --legacy-password-file (CUTOVER_LEGACY_PASSWORD_FILE)")
        password = values["legacy_password_file"].read_text().strip()
    return UpstreamSecurity(
        values["legacy_ca"], values["legacy_client_cert"], values["legacy_client_key"], values["legacy_auth"], password,
        values["legacy_client_cert_dir"],
    )  # fmt: skip


def native_security(values: dict[str, Any]) -> UpstreamSecurity:
    """TLS toward the new 2.0.1 CSMS (ConfigError naming the flag when inconsistent)."""
    if (values["native_client_cert"] is None) != (values["native_client_key"] is None):
        raise ConfigError("--native-client-cert and --native-client-key go together")
    return UpstreamSecurity(values["native_ca"], values["native_client_cert"], values["native_client_key"])


def proxy_settings(values: dict[str, Any], legacy_url: str) -> ProxySettings:
    return ProxySettings(
        upstream=upstream(values),
        native_url=values["native_url"],
        native=native_security(values),
        rollback=RollbackRules(
            Thresholds(
                tls_failures=values["rollback_tls_failures"],
                unreachable_seconds=values["rollback_unreachable_seconds"],
                max_error_rate=values["rollback_error_rate"],
                window=values["rollback_window"],
                enabled=values["auto_rollback"] == "on",
            )
        ),
        security_profile=values["security_profile"],
        tls=tls_files(values),
        client_cert_organization=values["client_cert_organization"],
        client_cert_identity=values["client_cert_identity"],
        handshake_timeout=values["handshake_timeout"],
        listen_host=values["listen"][0],
        listen_port=values["listen"][1],
        legacy_url=legacy_url,
        ping_interval=values["ping_interval"],
        ping_timeout=values["ping_interval"],
        max_frame_bytes=values["max_frame_bytes"],
        state_durability=values["state_durability"],
        translation=TranslationConfig(
            call_timeout=values["call_timeout"], long_id_token=values["long_id_token"]
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cutover", description="OCPP 1.6 → 2.0.1 cutover proxy")
    commands = parser.add_subparsers(dest="command", required=True)

    proxy = commands.add_parser("proxy", help="run the proxy in front of a legacy OCPP 1.6 CSMS")
    add_proxy_flags(proxy, listen="0.0.0.0:9000", admin="0.0.0.0:9400", log_level="INFO", profile=1)
    config.add(
        proxy, "--workers", config.positive_int, 1,
        "proxy processes sharing the listen port (SO_REUSEPORT); worker 0 serves the admin listener and the "
        "metrics of all",
    )  # fmt: skip
    config.add(
        proxy,
        "--legacy-url",
        config.ws_url,
        None,
        "legacy CSMS URL template, e.g. ws://csms:9000/ocpp/{station} (required)",
    )

    demo = commands.add_parser("demo", help="run everything embedded: Redis, legacy CSMS, proxy, chargers")
    add_proxy_flags(demo, listen="127.0.0.1:0", admin="127.0.0.1:9400", log_level="WARNING", profile=0)
    config.add(demo, "--chargers", config.positive_int, 5, "simulated 2.0.1 chargers")
    config.add(demo, "--duration", config.positive_float, None, "seconds to run (default: until Ctrl-C)")
    shadow_cli.add_commands(commands)
    control_cli.add_commands(commands)
    coverage = commands.add_parser("coverage", help="print what the proxy does with every OCPP action")
    coverage.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    certs = commands.add_parser("certs", help="development PKI: CA, server and station certificates, CRL")
    certs_commands = certs.add_subparsers(dest="certs_command", required=True)
    key_types = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072")
    certs_init = certs_commands.add_parser("init", help="write ca.pem/.key, server.pem/.key and an empty crl.pem")
    certs_station = certs_commands.add_parser("station", help="write ID.pem/.key, a station client certificate")
    certs_revoke = certs_commands.add_parser("revoke", help="add a station's certificate to crl.pem")
    certs_server = certs_commands.add_parser("server", help="replace server.pem/.key (rotation)")
    for certs_command in (certs_init, certs_station, certs_revoke, certs_server):
        certs_command.add_argument("--dir", type=Path, required=True, help="the PKI directory (must exist)")
    for certs_command in (certs_init, certs_server):
        certs_command.add_argument("--hostname", action="append", help="server DNS name, repeatable (first = CN)")
        certs_command.add_argument("--ip", action="append", help="server IP address, repeatable")
    certs_init.add_argument("--key-type", choices=key_types, default="ec-p256")
    certs_init.add_argument("--organization", default="ocpp-cutover dev", help="the O RDN of every certificate")
    certs_init.add_argument("--force", action="store_true", help="replace existing files")
    certs_station.add_argument("station_id", metavar="ID", help="station identity, also the certificate's CN")
    certs_station.add_argument("--key-type", choices=key_types, default="ec-p256")
    certs_station.add_argument("--days", type=int, default=365, help="validity in days")
    certs_station.add_argument("--force", action="store_true", help="replace existing files")
    certs_revoke.add_argument("station_id", metavar="ID", help="station identity, or a serial as 0x-hex")
    certs_server.add_argument("--days", type=int, default=365, help="validity in days")
    passwords = commands.add_parser("passwords", help="station HTTP Basic-auth passwords (stored as scrypt hashes)")
    passwords_set = passwords.add_subparsers(dest="passwords_command", required=True).add_parser(
        "set", help="read a station's password from stdin and store its salted hash in Redis"
    )
    passwords_set.add_argument("station_id", metavar="ID", help="station identity")
    config.add(passwords_set, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    lint = commands.add_parser("lint", help="check a capture's 2.0.1 charger frames for common certification failures")
    lint.add_argument("file", nargs="?", type=Path, help="capture: JSON lines with ts, cp, dir, frame (and proto)")
    lint.add_argument("--format", choices=("text", "json"), default="text")
    lint.add_argument("--rules", action="store_true", help="list the rules and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "coverage":
        from translators import coverage

        print({"text": coverage.as_text, "json": coverage.as_json, "markdown": coverage.as_markdown}[args.format]())
        return 0
    if args.command == "certs":
        from proxy import pki

        return pki.command(args)
    if args.command == "passwords":
        from proxy import passwords

        return passwords.command(args)
    if args.command == "lint":
        from shadow import lint

        return lint.command(args.file, args.format, list_rules=args.rules)
    try:
        values = config.resolve(args)
        if args.command == "shadow":
            return shadow_cli.main(args, values)
        if args.command in ("divergences", "switch", "status", "audit", "group", "enroll", "rules"):
            return one_shot(args, values)
        if args.command == "proxy" and values["legacy_url"] is None:
            raise ConfigError(
                "--legacy-url (CUTOVER_LEGACY_URL) is required, e.g. ws://csms:9000/ocpp/{station}"
            )
        if args.command in ("proxy", "demo"):
            admin_token(values)
            upstream(values)
            native_security(values)
        if args.command == "proxy":  # the demo makes its own dev PKI when it needs one
            tls_files(values)
    except ConfigError as exc:
        print(f"cutover {args.command}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=values["log_level"], format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    if values["log_level"] != "DEBUG":
        logging.getLogger("websockets").setLevel(logging.WARNING)  # one line per socket is noise at INFO
    if args.command == "proxy" and values["workers"] > 1:
        from proxy.workers import run_workers

        return run_workers(values, values["workers"])
    if args.command == "proxy":
        return run(serve_proxy(values))
    from peers.demo import run_demo

    return run(run_demo(values))


def one_shot(args: argparse.Namespace, values: dict[str, Any]) -> int:
    """A command that reads or writes the proxies' Redis once; 1 with a message when Redis cannot be reached."""
    try:
        if args.command == "divergences":
            return shadow_cli.main(args, values)
        return control_cli.main(args, values)
    except redis_client.UNAVAILABLE as exc:
        print(f"cutover {args.command}: Redis unavailable (--redis-url): {exc}", file=sys.stderr)
        return 1


def run(main_coroutine: Any) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
            return int(asyncio.run(main_coroutine) or 0)
        return int(uvloop.run(main_coroutine) or 0)
    return 130


async def wait_for_signal(parent: int | None = None) -> None:
    """Until SIGINT or SIGTERM; or, for a worker of `--workers`, until its parent is gone."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while parent is not None and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
            return
    if parent is not None:
        logging.getLogger("cutover").error("proxy_worker_orphaned parent=%d; stopping", parent)
        return
    await stop.wait()


def reload_tls(running: Any) -> None:
    """SIGHUP: new handshakes use the re-read certificate, key, CA and CRL; live sessions keep theirs."""
    if running.proxy.tls is None:  # a worker of --workers without TLS: its parent passes every SIGHUP on
        logging.getLogger("cutover").info("sighup_ignored: the listener has no TLS to reload")
        return
    try:
        running.proxy.tls.reload()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        logging.getLogger("cutover").error("tls_reload_failed error=%r; still serving the previous material", exc)


async def serve_proxy(values: dict[str, Any], worker: int | None = None, parent: int | None = None) -> int:
    """Run the proxy until a signal; as worker `worker` of `--workers` (started by process `parent`) it shares
    the listen port, and only worker 0 serves the admin and metrics listeners."""
    from proxy.app import start_proxy
    from proxy.redis_embedded import redis_or_embedded

    admin = worker is None or worker == 0
    with redis_or_embedded(values["redis_url"]) as (redis_url, embedded):
        if embedded:
            logging.getLogger("cutover").info("embedded_redis url=%s (no persistence)", redis_url)
        running = await start_proxy(
            proxy_settings(values, values["legacy_url"]), redis_url, values["admin_listen"] if admin else None,
            admin_token(values), values["metrics_listen"] if admin else None, reuse_port=worker is not None,
            # Worker 0's POST /tls/reload: the supervisor passes a SIGHUP on to every worker (this one again too).
            tls_reloaded=None if parent is None else functools.partial(os.kill, parent, signal.SIGHUP),
        )  # fmt: skip
        if running.proxy.tls is not None or worker is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_tls, running)
        try:
            await wait_for_signal(parent)
        finally:
            await running.stop()
    return 0
