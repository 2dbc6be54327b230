"""What the stacks' UserData does before cfn-init, run in bash with stubbed commands
(tests/userdata.py): swap exists before any package manager runs, whatever the OS, sized as
bingo-host's own swap step sizes it; on Debian 12 (the default AMI) it installs what the AMI
lacks by the paths AWS documents; then cfn-init."""

from __future__ import annotations

import re

import pytest

from bingo_host import layout, sizing
from tests import userdata
from tests.templates import CONFIG_TEMPLATES, REGION, TEMPLATES, Resolver, one

OSES = {"debian12": False, "amzn2023": True}  # has dnf


def _script(name: str) -> str:
    template = TEMPLATES[name]
    _, lt = one(template, "AWS::EC2::LaunchTemplate")
    return Resolver(template).resolve(lt["Properties"]["LaunchTemplateData"]["UserData"])


@pytest.mark.parametrize("os_name", OSES)
@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_swap_is_on_before_the_first_package_manager_runs(tmp_path, name, os_name):
    """On a nano a package manager without swap is OOM-killed (amazon-linux-2023#404); cfn-init
    and bootstrap's packages step run later still, so UserData turns swap on first."""
    ran = userdata.run(tmp_path, _script(name), dnf=OSES[os_name])
    assert ran.index("swapon") < ran.first_package_manager() < ran.index("cfn-init"), ran.calls
    assert f"swapon {ran.swapfile}" in ran.calls and "dd" not in ran.names()  # fallocate was enough
    assert ran.swapfile.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mem_kib", [464_000, 2 * 1024 * 1024, 2 * 1024 * 1024 + 4, 3_900_000])
def test_the_swap_file_is_the_size_the_swap_step_wants(tmp_path, mem_kib):
    """The swap step ('auto': sizing.swap_mib of MemTotal) then finds it done, not re-made."""
    assert _script("single-instance.yaml").count("/swapfile") == 1
    assert layout.SWAP_FILE == "/swapfile"
    ran = userdata.run(tmp_path, _script("single-instance.yaml"), mem_kib=mem_kib)
    want = sizing.swap_mib(mem_kib * 1024)
    assert f"fallocate -l {want}M {ran.swapfile}" in ran.calls
    assert "dd" not in ran.names()  # written out only when swapon refuses the fallocated file


def test_a_file_swapon_refuses_is_written_out_with_dd(tmp_path):
    ran = userdata.run(tmp_path, _script("ha.yaml"), bodies={"swapon": '[ -e "$0.once" ] || '
                                                                       '{ touch "$0.once"; exit 1; }'})
    assert [n for n in ran.names() if n in ("fallocate", "dd", "mkswap", "swapon")] == \
        ["fallocate", "mkswap", "swapon", "dd", "mkswap", "swapon"]
    assert ran.index("dd") < ran.first_package_manager()


def test_an_existing_swap_file_is_left_alone(tmp_path):
    ran = userdata.run(tmp_path, _script("single-instance.yaml"), swapfile_exists=True)
    assert not {"fallocate", "dd", "mkswap", "swapon"} & set(ran.names())
    assert ran.swapfile.read_bytes() == b"old"


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_debian_gets_cfn_bootstrap_and_the_ssm_agent_as_aws_documents(tmp_path, name):
    """aws-cfn-bootstrap: AWS's py3 tarball (CloudFormation helper scripts reference), in a venv
    at /opt/aws (Debian's Python refuses system-wide pip), so cfn-init, cfn-signal and cfn-hup are
    at AL2023's paths. The SSM agent: AWS's .deb from the region's bucket for this architecture
    (scripts/replace-instance reaches the host through it). amazon-ec2-utils: the udev rules that
    name an NVMe EBS volume /dev/sdf as on AL2023."""
    ran = userdata.run(tmp_path, _script(name))
    calls = "\n".join(ran.calls)
    assert "dnf" not in ran.names()
    assert re.search(r"^apt-get install -y .*\bpython3-venv\b.*\bcurl\b.*\bamazon-ec2-utils\b", calls, re.M)
    assert ran.index("apt-get") < ran.index("udevadm")
    assert f"python3 -m venv {tmp_path}/aws" in ran.calls
    assert ("pip install https://s3.amazonaws.com/cloudformation-examples/"
            "aws-cfn-bootstrap-py3-latest.tar.gz") in ran.calls
    deb = (f"https://s3.{REGION}.amazonaws.com/amazon-ssm-{REGION}/latest/debian_amd64/"
           "amazon-ssm-agent.deb")
    assert f"curl -fsSo {tmp_path}/ssm.deb {deb}" in ran.calls
    assert f"dpkg -i {tmp_path}/ssm.deb" in ran.calls
    assert "systemctl enable --now amazon-ssm-agent" in ran.calls
    assert ran.index("pip") < ran.index("cfn-init") and ran.index("systemctl") < ran.index("cfn-init")


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_amazon_linux_gets_cfn_bootstrap_from_dnf_only(tmp_path, name):
    ran = userdata.run(tmp_path, _script(name), dnf=True)
    assert "dnf install -y aws-cfn-bootstrap" in ran.calls
    assert not {"apt-get", "pip", "curl", "dpkg"} & set(ran.names())


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_apt_waits_for_unattended_upgrades_instead_of_failing(tmp_path, name):
    """Debian's cloud images run unattended-upgrades, which can hold apt's locks at first boot.
    Measured with apt 2.6.1 (bookworm) against a held lock: `apt-get install` with
    DPkg::Lock::Timeout waits and succeeds (without it: exit 100 at once), but `apt-get update`
    ignores that option for the lists lock (exit 100 at once), so update is retried instead.
    The file is written before the first apt-get, so cfn-init's and bootstrap's installs wait too."""
    conf = tmp_path / "apt.conf.d"
    missing = f'grep -qs "^DPkg::Lock::Timeout \\"[0-9]*\\";$" {conf}/* || echo "apt-get without the lock wait" >> {tmp_path}/calls'
    fail_twice = (f'{missing}\n[ "$1" = update ] || exit 0\n'
                  f'echo >> {tmp_path}/updates; [ "$(wc -l < {tmp_path}/updates)" -gt 2 ]')
    ran = userdata.run(tmp_path, _script(name), bodies={"apt-get": fail_twice})
    assert "apt-get without the lock wait" not in ran.calls
    updates = [i for i, c in enumerate(ran.calls) if c == "apt-get update"]
    installs = [i for i, c in enumerate(ran.calls) if c.startswith("apt-get install")]
    assert len(updates) == 3 and installs and installs[0] > updates[-1], ran.calls
