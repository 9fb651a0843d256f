"""Portico's own remote provisioners: gateway_provisioners' with the defects that matter to a
gateway fixed, registered under Portico's entry point names (pyproject.toml).

A kernelspec naming a stock provisioner listed in remote.FIXED starts through Portico's instead
(manager.KernelManager), so specs written by `jupyter-ssh-spec` work as they are.  What each
fix is for, as measured with gateway_provisioners 0.5.0 (docs/remote-kernels.md has the numbers):

- The response listener: the stock one accepts, 10,000 times a second, from a socket with a
  10 ms timeout, on the event loop, which it then blocks almost all the time (a local kernel's
  round trip went from 6 to 22 ms).  Here it is an asyncio server on a non-blocking socket, and
  its RSA key is made in a thread before the first launch (`prepare`).
- The launcher's helper (the "listener", reached for signals and polls): connected to without
  blocking, with a timeout.
- The SSH launch: the stock provisioner connects, authenticates and runs the command on the
  event loop (0.3 s per start, with no connect timeout); here in a thread, with timeouts, and a
  launch cancelled meanwhile ends the kernel it started.
- Readiness: the connection info is awaited directly (the stock one looks every 0.5 s).
- Shutdown: the stock provisioner stops the listener as soon as a shutdown is asked for, and its
  poll then says "dead" while the kernel may still run: a kernel shut down before it answered
  kernel_info was orphaned 4 times in 10, and a stock ipykernel lingers 29 s waiting for its
  zombie listener.  Here the listener stays until cleanup, and cleanup makes sure over SSH that
  the kernel's process group is gone from its host (killed after a grace of REAP_GRACE).
- A launch that fails says on which host, and where the kernel's log is there, with its tail.
- The remote command: the stock one joins the kernelspec's argv unquoted.
- Liveness: the stock poll asks the launcher's helper process, which outlives a killed kernel
  (for one more poll) and may die while the kernel runs (then a healthy kernel is declared dead
  and restarted, and interrupts are lost).  Here a kernel is alive while its own heartbeat port
  takes connections (through tunnels: while its heartbeat echoes), and signals the helper cannot
  take go over SSH.
- SSH tunnels: the stock ones ask OpenSSH for a ServerAliveInterval of 100 years, which
  OpenSSH 9 rejects, so every tunnel exits at once; each opens a remote shell (no -N); and the
  launch returns before they are up.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
from typing import Any

import paramiko
import zmq
import zmq.asyncio
from Cryptodome.PublicKey import RSA
from gateway_provisioners import remote_provisioner as stock_remote
from gateway_provisioners.config_mixin import ssh_port
from gateway_provisioners.distributed import DistributedProvisioner as StockDistributedProvisioner
from gateway_provisioners.response_manager import ResponseManager, redact_secrets
from jupyter_client import KernelConnectionInfo
from traitlets.config import SingletonConfigurable

SSH_TIMEOUT = 10.0  # seconds for an SSH connect, its banner and authentication
LISTENER_TIMEOUT = 5.0  # seconds to connect to a kernel's listener: longer means the host is gone
REAP_GRACE = 1.0  # seconds a remote kernel has to exit after its shutdown before it is killed
PAYLOAD_LIMIT = 1 << 16  # bytes of connection info a launcher may send
LOG_TAIL = 20  # lines of a failed kernel's remote log quoted in the error
KEEP_ALIVE = 60  # seconds between an SSH tunnel's keep-alives
TUNNEL_WAIT = 10.0  # seconds for the SSH tunnels of a new kernel to open
HEARTBEAT_WAIT = 2.0  # seconds a remote kernel has to echo a heartbeat before its helper is asked


def curve_pair(info: dict[str, Any]) -> tuple[Any, Any]:
    return info["curve_publickey"], info["curve_secretkey"]


class Responses(ResponseManager):
    """Where remote launchers send their kernels' connection info: an asyncio server."""

    def __init__(self, private_key: Any = None, **kwargs: Any) -> None:
        SingletonConfigurable.__init__(self, **kwargs)  # not ResponseManager's: it polls
        self._response_ip = self._response_port = self._response_socket = None
        self._connection_processor = None
        self._private_key = private_key or RSA.generate(ResponseManager.KEY_SIZE)
        self._public_key = self._private_key.publickey()
        self._public_pem = self._public_key.export_key("PEM")
        self._response_registry: dict[str, Any] = {}
        self._prepare_response_socket()
        assert self._response_socket is not None
        self._response_socket.setblocking(False)
        self._server: asyncio.Future[asyncio.Server] = asyncio.ensure_future(
            asyncio.start_server(self._receive, sock=self._response_socket)
        )

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await asyncio.wait_for(reader.read(PAYLOAD_LIMIT), LISTENER_TIMEOUT)
            payload = self._decode_payload(data.decode())
            self.log.debug("connection info received: %s", redact_secrets(payload))
            self._post_connection(payload)
        except Exception as e:  # a stray or broken sender: the server goes on
            self.log.error("Portico: a remote launcher's response could not be read: %s", e)
        finally:
            writer.close()

    def _start_response_manager(self) -> None:
        pass  # the server above

    def stop_response_manager(self) -> None:
        if not self._server.done():
            self._server.cancel()
        elif not self._server.cancelled() and self._server.exception() is None:
            self._server.result().close()
        if self._response_socket is not None:
            self._response_socket.close()
            self._response_socket = None


async def prepare() -> None:
    """Before the first remote launch: the response listener, its RSA key made in a thread."""
    if ResponseManager._instance is None:
        key = await asyncio.to_thread(RSA.generate, ResponseManager.KEY_SIZE)
        if ResponseManager._instance is None:
            Responses.instance(private_key=key)


def error_text(e: BaseException) -> str:
    return str(e) or type(e).__name__


class ListenerFixes:
    """For every remote provisioner: its kernel's listener reached without blocking."""

    comm_port: int
    comm_ip: str | None

    async def _send_listener_request(self, request: dict[str, Any], shutdown_socket: bool | None = False) -> None:
        """As the stock one, without blocking: its socket has a 10 ms timeout, which asyncio
        then waits out inside connect, on the event loop."""
        if self.comm_port <= 0 or not self.comm_ip:
            return
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (self.comm_ip, self.comm_port)), LISTENER_TIMEOUT)
            await loop.sock_sendall(sock, json.dumps(request).encode())
            if shutdown_socket:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        finally:
            sock.close()


class DistributedProvisioner(ListenerFixes, StockDistributedProvisioner):
    """gateway_provisioners' SSH provisioner, fixed (see the module's docstring)."""

    _listened = False  # the kernel's own ports were seen listening since its launch

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        self.kernel_log = None
        self._listened = False
        env = kwargs.get("env", {})
        self.assigned_host = self._determine_next_host(env)
        try:
            self.ip = self.assigned_ip = await asyncio.to_thread(socket.gethostbyname, self.assigned_host)
        except OSError as e:
            raise RuntimeError(f"Remote host {self.assigned_host!r} cannot be resolved: {error_text(e)}") from None
        launch = asyncio.ensure_future(
            asyncio.to_thread(self._launch_remote_process, cmd, **self._scrub_kwargs(kwargs))
        )
        try:
            result = await asyncio.shield(launch)
        except asyncio.CancelledError:  # the kernel starts anyway: wait for its pid, then end it
            pid = await asyncio.gather(launch, return_exceptions=True)
            if isinstance(pid[0], str) and pid[0].strip().isdigit():
                self.pid = int(pid[0])
                await asyncio.shield(self._reap(grace=0))
            raise
        except Exception as e:
            raise RuntimeError(f"Could not start a kernel on {self._where()}: {error_text(e)}") from None
        try:
            self.pid = int(result)
        except (TypeError, ValueError):
            raise RuntimeError(
                f"Could not start a kernel on {self._where()}: the launch command printed {result!r}, not a pid"
            ) from None
        self.log_kernel_launch(cmd)
        try:
            await self.confirm_remote_startup()
        except BaseException:
            self.response_manager._response_registry.pop(self.kernel_id, None)
            await asyncio.shield(self._reap(grace=0))
            raise
        return self.connection_info

    def _build_startup_command(self, cmd: list[str], **kwargs: Any) -> Any:
        """As the stock one, with the kernelspec's argv shell-quoted: the stock one joins it with
        spaces, so an argument with a space or a quote in it breaks the remote command."""
        if not self.ip_is_local(self.ip):  # a local kernel's argv goes to Popen as it is
            cmd = [shlex.quote(arg) for arg in cmd]
        return super()._build_startup_command(cmd, **kwargs)

    def _where(self) -> str:
        return f"host {self.assigned_host}" + (f" ({self.ip})" if self.ip and self.ip != self.assigned_host else "")

    async def confirm_remote_startup(self) -> None:
        self.start_time = self.get_current_time()
        response = self.response_manager._response_registry[self.kernel_id]
        try:
            await asyncio.wait_for(response.wait(), self.launch_timeout)
        except TimeoutError:
            tail = await asyncio.to_thread(self._log_tail)
            raise TimeoutError(
                f"The kernel on {self._where()} sent no connection info within {self.launch_timeout:g} s "
                f"(launch_timeout); its log there is {self.kernel_log}" + (f", which ends:\n{tail}" if tail else "")
            ) from None
        connect_info = self.response_manager._response_registry.pop(self.kernel_id).response
        if stock_remote.tunneling_enabled:  # tunnels are processes started with pexpect: blocking
            await asyncio.to_thread(self._setup_connection_info, connect_info)
            await self._tunnels_up()
        else:
            self._setup_connection_info(connect_info)

    async def _tunnels_up(self) -> None:
        """Until every tunnel's local end accepts connections: the stock provisioner returns
        before they do, and a kernel polled meanwhile looks dead (its listener unreachable)."""
        info = self.connection_info
        ports = [info[f"{c}_port"] for c in ("shell", "iopub", "stdin", "hb", "control")] + [self.comm_port]
        deadline = asyncio.get_running_loop().time() + TUNNEL_WAIT
        for port in ports:
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise RuntimeError(
                            f"The SSH tunnels to the kernel on {self._where()} did not open within {TUNNEL_WAIT:g} s"
                        ) from None
                    await asyncio.sleep(0.05)

    def _log_tail(self) -> str:
        if not self.kernel_log or not self.ip:
            return ""
        try:
            return "".join(self._rsh(self.ip, f"tail -n {LOG_TAIL} {shlex.quote(self.kernel_log)}")).rstrip()
        except Exception:
            return ""

    def _get_ssh_client(self, host: str) -> paramiko.SSHClient:
        """As the stock one, with timeouts: the stock one waits on an unanswering host for as
        long as the OS does (about two minutes)."""
        ssh = paramiko.SSHClient()
        ssh.load_system_host_keys()
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        options: dict[str, Any] = {"timeout": SSH_TIMEOUT, "banner_timeout": SSH_TIMEOUT, "auth_timeout": SSH_TIMEOUT}
        if self.remote_pwd:
            options["password"] = self.remote_pwd
        try:
            ssh.connect(socket.gethostbyname(host), port=ssh_port, username=self.remote_user, **options)
        except paramiko.SSHException as e:
            ssh.close()
            raise RuntimeError(f"SSH to {self.remote_user}@{host}:{ssh_port} refused: {error_text(e)}") from None
        except OSError as e:
            ssh.close()
            errors = getattr(e, "errors", None)  # paramiko's NoValidConnectionsError: one per address tried
            why = "; ".join(error_text(x) for x in errors.values()) if errors else error_text(e)
            raise RuntimeError(f"SSH to {host}:{ssh_port} failed: {why}") from None
        return ssh

    # liveness and signals ----------------------------------------------------------------------
    async def poll(self) -> int | None:
        """Alive while the kernel's own process listens; the stock poll only asks the launcher's
        helper, which outlives a killed kernel and can die before a healthy one."""
        if self.tunnel_processes:  # a tunnel's local end always accepts: ask the kernel itself
            alive: bool | None = await self._kernel_answers()
        else:
            alive = await self._kernel_listens()
        if alive:
            self._listened = True
            return None
        if alive is False and self._listened:
            return 0
        # Cannot tell (the host does not answer), or the kernel has not bound its ports yet (the
        # launcher reports before the kernel listens): the helper answers while its process is there.
        return await super().poll()

    async def _kernel_listens(self) -> bool | None:
        """Whether the kernel's heartbeat port takes a TCP connection (the host's network stack
        answers for it: a live process, busy or not, does; a dead one's port refuses), or None
        when the host does not answer at all."""
        info = self.connection_info
        if not info.get("hb_port") or not info.get("ip"):
            return None
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(info["ip"], info["hb_port"]), LISTENER_TIMEOUT)
        except ConnectionRefusedError:
            return False
        except (OSError, TimeoutError):
            return None
        writer.close()
        return True

    async def _kernel_answers(self) -> bool:
        info = self.connection_info
        if not info.get("hb_port") or not info.get("ip"):
            return False
        sock = zmq.asyncio.Context.instance().socket(zmq.REQ)
        sock.linger = 0
        if info.get("curve_publickey"):
            public, secret = (k if isinstance(k, bytes) else k.encode() for k in curve_pair(info))
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = public, public, secret
        try:
            sock.connect(f"tcp://{info['ip']}:{info['hb_port']}")
            await sock.send(b"portico")
            return bool(await sock.poll(HEARTBEAT_WAIT * 1000))
        finally:
            sock.close()

    async def send_signal(self, signum: int) -> None:
        """Through the launcher's helper, as the stock one; over SSH when the helper is gone."""
        if await self._send_signal_via_listener(signum) or signum == 0:
            return
        if self.pid > 0 and self.ip and not self.ip_is_local(self.ip):
            try:
                await asyncio.to_thread(self._rsh, self.ip, f"kill -{int(signum)} {int(self.pid)}")
            except Exception as e:
                self.log.warning("Portico: signal %d to kernel %s over SSH failed: %s", signum, self.kernel_id, e)

    # shutdown --------------------------------------------------------------------------------
    async def shutdown_requested(self, restart: bool = False) -> None:
        # The listener is the only way to see whether the kernel still runs: it stays until
        # cleanup.  Through tunnels a connect always succeeds, so there the stock path stays.
        if self.tunnel_processes:
            await super().shutdown_requested(restart)

    async def cleanup(self, restart: bool = False) -> None:
        await self.shutdown_listener(restart)
        await self._reap()
        await super().cleanup(restart)

    async def _reap(self, grace: float = REAP_GRACE) -> None:
        """The kernel's process group gone from its host: given grace seconds to exit, then killed."""
        if not self.ip or self.pid <= 0 or self.ip_is_local(self.ip):
            return
        try:
            said = await asyncio.to_thread(self._rsh, self.ip, reap_command(self.pid, self.pgid, grace))
            if said and said[-1].strip() == "killed" and grace > 0:
                self.log.warning(
                    "Portico: kernel %s did not exit within %g s of its shutdown on %s; killed",
                    self.kernel_id,
                    grace,
                    self._where(),
                )
        except Exception as e:
            self.log.warning("Portico: could not make sure kernel %s ended on %s: %s", self.kernel_id, self._where(), e)
        self.pid = 0

    def _create_ssh_tunnel(
        self,
        kernel_channel: Any,
        local_port: int,
        remote_port: int,
        remote_ip: str,
        server: str,
        port: int,
        key: str | None = None,
    ) -> None:
        # The stock one calls RemoteProvisionerBase._spawn_ssh_tunnel by name: an override of
        # that alone would never run.
        try:
            tunnel = self._spawn_ssh_tunnel(local_port, remote_port, remote_ip, server, port, key)
        except Exception as e:
            raise RuntimeError(f"Could not open an SSH tunnel for {kernel_channel.value}: {error_text(e)}") from e
        self.tunnel_processes[kernel_channel.value] = tunnel

    @staticmethod
    def _spawn_ssh_tunnel(
        local_port: int, remote_port: int, remote_ip: str, server: str, port: int, key: str | None = None
    ) -> Any:
        import pexpect

        cmd = (
            f"ssh -N -p {port} -o ServerAliveInterval={KEEP_ALIVE} -S none "
            f"-L 127.0.0.1:{local_port}:{remote_ip}:{remote_port} {server}"
        )
        env = {k: v for k, v in os.environ.items() if k != "SSH_ASKPASS"}
        return pexpect.spawn(cmd, env=env)


def reap_command(pid: int, pgid: int, grace: float) -> str:
    """A shell line for the kernel's host: wait up to grace seconds for pid to end (a zombie
    counts as ended), else kill it; then kill what is left of its process group; say which."""
    ticks = int(grace / 0.05)
    group = f"kill -9 -- -{pgid} 2>/dev/null;" if pgid > 1 else ""
    return (
        f"p={pid}; i=0; said=gone; "
        f'while s=$(sed "s/.*) //" /proc/$p/stat 2>/dev/null | cut -c1) && [ -n "$s" ] && [ "$s" != Z ]; do '
        f"if [ $i -ge {ticks} ]; then kill -9 $p; said=killed; break; fi; sleep 0.05; i=$((i+1)); done; "
        f"{group} echo $said"
    )
