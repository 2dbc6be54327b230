"""Launch = serving (issue 23): bingo_host/launch_signal.py against moto's CodeDeploy and a
stand-in CloudFormation endpoint (moto 5.2.6 has no SignalResource: it answers 500), both over
HTTP with the real boto3 clients; and the hook command that sends the armed signal."""

from __future__ import annotations

import os
import stat
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from click.testing import CliRunner

from bingo_host import cli, launch_signal, layout, state
from bingo_host.deploy import hooks
from tests.aws_servers import AWS_ENV_CLEARED, LOOPBACK, REGION

STACK, GROUP, APP, INSTANCE = "bingo-ha", "bingo-ha", "bingo-ha-app", "i-0123456789abcdef0"
OK = b'<SignalResourceResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">' \
     b'<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></SignalResourceResponse>'


class CloudFormation:
    """SignalResource on 127.0.0.1: the signals it took (form fields); `refuse` answers
    CloudFormation's ValidationError instead (a signal no stack operation waits for)."""

    def __init__(self):
        self.signals, self.refuse = [], None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                if owner.refuse:
                    body, code = (b'<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>'
                                  b'<Message>' + owner.refuse.encode() + b'</Message></Error></ErrorResponse>'), 400
                else:
                    owner.signals.append(form)
                    body, code = OK, 200
                self.send_response(code)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def cfn_server():
    server = CloudFormation()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def cfn(moto_server, cfn_server, monkeypatch, tmp_path):
    """Fake credentials, no config files (aws_env without its EC2 proxy and IMDS: not asked)."""
    for name in AWS_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "aws-empty").write_text("")
    for name, value in (("AWS_CONFIG_FILE", str(tmp_path / "aws-empty")),
                        ("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-empty")),
                        ("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("NO_PROXY", "127.0.0.1,localhost")):
        monkeypatch.setenv(name, value)
    moto_server.reset()
    cfn_server.signals, cfn_server.refuse = [], None
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", cfn_server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEDEPLOY", moto_server.url)
    monkeypatch.setattr(layout, "LAUNCH_SIGNAL_FILE", str(tmp_path / "launch-signal.json"))
    return cfn_server


def make_group():
    codedeploy = boto3.session.Session().client("codedeploy", region_name=REGION)
    codedeploy.create_application(applicationName=APP, computePlatform="Server")
    codedeploy.create_deployment_group(applicationName=APP, deploymentGroupName=GROUP,
                                       serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy")


def arm(**kw):
    return launch_signal.arm(STACK, "AutoScalingGroup", REGION, APP, GROUP, INSTANCE, **kw)


def record():
    return state.read_json(layout.LAUNCH_SIGNAL_FILE)


WANTED = {"Action": "SignalResource", "StackName": STACK, "LogicalResourceId": "AutoScalingGroup",
          "UniqueId": INSTANCE}


@pytest.mark.parametrize("group", [True, False], ids=["no-successful-deployment", "no-group-yet"])
def test_with_nothing_to_deploy_success_goes_at_once_and_once(cfn, group):
    """A group without a successful deployment, or none yet (the stack's creation: the group is
    made after the Auto Scaling group), deploys nothing at launch: SUCCESS now."""
    if group:
        make_group()
    assert "would send SUCCESS now" in arm(dry_run=True)
    assert cfn.signals == [] and record() is None  # a dry run sends and writes nothing
    assert "SUCCESS sent" in arm()
    assert [{k: s[k] for k in (*WANTED, "Status")} for s in cfn.signals] == [{**WANTED, "Status": "SUCCESS"}]
    assert record()["status"] == "sent"
    assert stat.S_IMODE(os.stat(layout.LAUNCH_SIGNAL_FILE).st_mode) == 0o600
    assert "already armed" in arm()  # cfn-hup's re-run of cfn-init on an update
    launch_signal.deliver("SUCCESS")
    assert len(cfn.signals) == 1


class Deployed:
    """CodeDeploy's GetDeploymentGroup answer for a group that has deployed (moto 5.2.6 never
    fills lastSuccessfulDeployment: its responses.py says TODO)."""

    def get_deployment_group(self, applicationName, deploymentGroupName):
        return {"deploymentGroupInfo": {"lastSuccessfulDeployment": {"deploymentId": "d-OLD", "status": "Succeeded"}}}


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE"])
def test_a_launch_deployment_owes_the_signal_and_its_hooks_send_it_once(cfn, status):
    cloudformation = boto3.session.Session().client("cloudformation", region_name=REGION)
    assert "armed" in arm(clients=(cloudformation, Deployed()))
    assert cfn.signals == [] and record()["status"] == "pending"
    launch_signal.deliver(status)
    launch_signal.deliver("SUCCESS")
    assert [{k: s[k] for k in (*WANTED, "Status")} for s in cfn.signals] == [{**WANTED, "Status": status}]
    assert record()["status"] == "sent" and record()["signal"] == status


def test_a_refused_signal_is_logged_and_kept_never_raised(cfn, caplog):
    """An instance a scale-out launched: no stack operation waits for it, CloudFormation refuses
    the signal; the deployment goes on, the record says why, nothing is sent again."""
    cloudformation = boto3.session.Session().client("cloudformation", region_name=REGION)
    arm(clients=(cloudformation, Deployed()))
    cfn.refuse = "Resource AutoScalingGroup is in UPDATE_COMPLETE state and cannot be signaled"
    launch_signal.deliver("SUCCESS")
    assert record()["status"] == "failed" and "ValidationError" in record()["error"]
    assert "launch signal: SUCCESS not sent: cloudformation:SignalResource SUCCESS to bingo-ha/AutoScalingGroup: " \
           "ValidationError: Resource AutoScalingGroup" in caplog.text
    cfn.refuse = None
    launch_signal.deliver("SUCCESS")
    assert cfn.signals == []


def test_no_signal_armed_is_nothing_to_send(cfn):
    launch_signal.deliver("FAILURE")
    assert cfn.signals == [] and record() is None


def test_a_failed_group_read_is_one_line_and_writes_nothing(cfn, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEDEPLOY", cfn.url)  # not CodeDeploy: no answer it can read
    with pytest.raises(launch_signal.SignalError) as err:
        arm()
    assert str(err.value).startswith(f"codedeploy:GetDeploymentGroup {APP}/{GROUP}: ")
    assert "\n" not in str(err.value) and record() is None
    assert not [s for s in cfn.signals if s.get("Action") == "SignalResource"]


def test_a_failing_hook_sends_the_armed_failure(cfn):
    """`bingo-host hook` itself: a hook that fails (here an event bingo-host does not know) sends
    the armed FAILURE; it still exits non-zero."""
    cloudformation = boto3.session.Session().client("cloudformation", region_name=REGION)
    arm(clients=(cloudformation, Deployed()))
    result = CliRunner().invoke(cli.main, ["hook", "NoSuchEvent"], env={"DEPLOYMENT_ID": "d-NEW"})
    assert result.exit_code != 0
    assert [s["Status"] for s in cfn.signals] == ["FAILURE"]


@pytest.mark.parametrize("event, sent", [("ValidateService", ["SUCCESS"]), ("ApplicationStart", [])])
def test_only_a_passed_validate_service_sends_success(cfn, monkeypatch, event, sent):
    """The hook command's wiring alone (the event's own work stood in for: ValidateService needs
    a served release, test_deploy's host tests run it)."""
    cloudformation = boto3.session.Session().client("cloudformation", region_name=REGION)
    arm(clients=(cloudformation, Deployed()))
    monkeypatch.setattr(hooks, "run_hook", lambda cfg, name: None)
    monkeypatch.setattr(cli.Options, "load_config", lambda self: None)
    result = CliRunner().invoke(cli.main, ["hook", event], env={"DEPLOYMENT_ID": "d-NEW"})
    assert result.exit_code == 0, result.output
    assert [s["Status"] for s in cfn.signals] == sent


def test_the_records_say_what_was_owed_sent_and_when(cfn):
    """The record, whole, at each stage (root-only): what the hooks read and an operator sees."""
    import time

    cloudformation = boto3.session.Session().client("cloudformation", region_name=REGION)
    base = {"stack": STACK, "resource": "AutoScalingGroup", "region": REGION, "instance_id": INSTANCE}
    assert arm(clients=(cloudformation, Deployed()), dry_run=True) == \
        f"launch signal: would arm it ({layout.LAUNCH_SIGNAL_FILE})"
    assert record() is None
    assert arm(clients=(cloudformation, Deployed())) == \
        f"launch signal: armed; the launch deployment's ValidateService sends it ({layout.LAUNCH_SIGNAL_FILE})"
    assert record() == {**base, "status": "pending"}
    assert stat.S_IMODE(os.stat(layout.LAUNCH_SIGNAL_FILE).st_mode) == 0o600
    os.chmod(layout.LAUNCH_SIGNAL_FILE, 0o644)  # the delivered record is written root-only again
    launch_signal.deliver("FAILURE")
    rec = record()
    assert abs(rec.pop("at") - time.time()) < 30
    assert rec == {**base, "status": "sent", "signal": "FAILURE"}
    assert stat.S_IMODE(os.stat(layout.LAUNCH_SIGNAL_FILE).st_mode) == 0o600


def test_success_sent_at_once_is_recorded_whole(cfn):
    import time

    assert arm() == f"launch signal: SUCCESS sent (deployment group {GROUP} has no successful deployment)"
    rec = record()
    assert abs(rec.pop("at") - time.time()) < 30
    assert rec == {"stack": STACK, "resource": "AutoScalingGroup", "region": REGION, "instance_id": INSTANCE,
                   "status": "sent", "signal": "SUCCESS"}


def test_a_refused_signal_is_recorded_whole(cfn):
    import time

    cloudformation = boto3.session.Session().client("cloudformation", region_name=REGION)
    arm(clients=(cloudformation, Deployed()))
    cfn.refuse = "no update in progress"
    launch_signal.deliver("FAILURE")
    rec = record()
    assert abs(rec.pop("at") - time.time()) < 30 and rec.pop("error").endswith("ValidationError: no update in progress")
    assert rec == {"stack": STACK, "resource": "AutoScalingGroup", "region": REGION, "instance_id": INSTANCE,
                   "status": "failed", "signal": "FAILURE"}
    assert stat.S_IMODE(os.stat(layout.LAUNCH_SIGNAL_FILE).st_mode) == 0o600


def test_a_sent_signal_is_logged(cfn, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="bingo_host.launch_signal")
    cloudformation = boto3.session.Session().client("cloudformation", region_name=REGION)
    arm(clients=(cloudformation, Deployed()))
    launch_signal.deliver("SUCCESS")
    assert f"launch signal: SUCCESS sent to {STACK}/AutoScalingGroup for {INSTANCE}" in caplog.text


def test_an_answer_without_the_group_is_a_clear_error():
    class Empty:
        def get_deployment_group(self, applicationName, deploymentGroupName):
            return {}

    with pytest.raises(launch_signal.SignalError) as err:
        launch_signal.deployed_before(Empty(), APP, GROUP)
    assert str(err.value) == (f"codedeploy:GetDeploymentGroup {APP}/{GROUP}: an answer without "
                              "deploymentGroupInfo")


def test_an_error_without_a_code_is_raised_not_taken_for_a_missing_group():
    from botocore.exceptions import ClientError

    class Broken:
        def get_deployment_group(self, applicationName, deploymentGroupName):
            raise ClientError({}, "GetDeploymentGroup")

    with pytest.raises(ClientError):
        launch_signal.deployed_before(Broken(), APP, GROUP)


def test_the_clients_give_up_in_seconds_not_minutes(cfn):
    """A hook must not hang on an unreachable endpoint: short timeouts, few retries."""
    cf, cd = launch_signal._clients(REGION)
    assert (cf.meta.service_model.service_name, cd.meta.service_model.service_name) == ("cloudformation", "codedeploy")
    for client in (cf, cd):
        c = client.meta.config
        assert client.meta.region_name == REGION
        assert (c.connect_timeout, c.read_timeout) == (3, 15)
        assert c.retries == {"mode": "standard", "total_max_attempts": 5}
