"""Each field check on its own, called here (not through a config parsed at import), as tables of
value -> normalised value, or value -> the whole error (the field named, the reason word for
word): fields.py, name_fields.py, path_fields.py, secret_fields.py."""

from __future__ import annotations

import pytest

from bingo_host import fields as f
from bingo_host import name_fields as nf
from bingo_host import path_fields as pf
from bingo_host import secret_fields as sf
from bingo_host.errors import ConfigError

FIELD = "section.name"


def refusal(check, value, field: str = FIELD) -> str:
    """The reason check gives for value, after checking that the error names `field`."""
    with pytest.raises(ConfigError) as info:
        check(value, FIELD)
    assert info.value.field == field and str(info.value) == f"{field}: {info.value.reason}"
    return info.value.reason


def run_table(check, value, expected):
    """expected: the normalised value, or ConfigError's reason as Refused(...)."""
    if isinstance(expected, Refused):
        assert refusal(check, value, expected.field) == expected.reason
    else:
        result = check(value, FIELD)
        assert result == expected and type(result) is type(expected)


class Refused:
    def __init__(self, reason: str, field: str = FIELD):
        self.reason, self.field = reason, field

    def __repr__(self):
        return f"Refused({self.reason!r})"


def allows(allowed: str, check):
    """A check of the test's own, with the `allowed` text every check carries."""
    check.allowed = allowed
    return check


def NA(allowed: str, got: str, field: str = FIELD) -> Refused:
    """A NotAllowed refusal: what is allowed, and the value as the error quotes it."""
    return Refused(f"must be {allowed} (got {got})", field)


# -- building blocks --

class Custom:
    pass


@pytest.mark.parametrize("value, expected", [
    (True, "a boolean"), (3, "an integer"), ("x", "a string"), ([], "a list"), ({}, "a mapping"),
    (1.5, "a number"), (None, "null"), (Custom(), "Custom")])
def test_type_name(value, expected):
    assert f.type_name(value) == expected


def test_clip_and_shown():
    assert f.clip("x" * 40) == "x" * 40
    assert f.clip("x" * 41) == "x" * 40 + "..."
    assert f.shown("it's") == '"it\'s"'
    assert f.shown("y" * 70) == "'" + "y" * 39 + "..."
    assert f.shown(10 ** 5000) == "a very long number"
    assert [f.shown(v) for v in (None, True, False, [1], {"a": 1}, 0, 1.5)] == \
        ["null", "true", "false", "a list", "a mapping", "0", "1.5"]


def test_not_allowed_says_what_is_allowed_and_quotes_the_value():
    err = f.NotAllowed("a.b", "an integer", "x", )
    assert (err.field, err.reason, err.allowed, err.value) == ("a.b", "must be an integer (got 'x')",
                                                                "an integer", "x")
    assert f.NotAllowed("a.b", "a secret", "x", "a literal").reason == "must be a secret (got a literal)"
    assert isinstance(err, ConfigError) and str(err) == "a.b: must be an integer (got 'x')"


def test_setting_carries_its_default_check_and_meaning():
    made = f.setting(3, f.boolean, "what it means")
    assert (made.default, made.metadata["check"], made.metadata["doc"]) == (3, f.boolean, "what it means")


def test_required_with():
    f.required_with(True, "x", "a.b", "c is on", "what")
    f.required_with(False, None, "a.b", "c is on", "what")
    assert refusal(lambda v, p: f.required_with(True, v, p, "c is on", "what"), "") == \
        "required when c is on (what)"


@pytest.mark.parametrize("make, allowed", [  # made in the test: mutants switch on there
    (lambda: f.integer(1, 5), "an integer between 1 and 5"), (lambda: f.boolean, "true or false"),
    (lambda: f.choice("a", "b"), "one of a, b"), (lambda: f.pattern("x", "an x"), "an x"),
    (lambda: f.or_auto(f.integer(1, 5)), "'auto' or an integer between 1 and 5"),
    (lambda: f.optional(f.boolean), "true or false, or null"),
    (lambda: f.not_system_user(f.pattern("x", "an x")), "an x, not a system account"),
    (lambda: f.not_in(frozenset({"b", "a"}), "reserved", f.pattern("x", "an x")), "an x, not a or b"),
    (lambda: f.swap_size, "'auto', 0, or a size between 16M and 32G such as 512M or 2G"),
    (lambda: f.schedule, "one of hourly, daily, weekly, monthly or an OnCalendar= expression such "
                         "as '*-*-* 03:00:00'"),
    (lambda: f.requirement_specifiers, "a list of at most 32 requirement specifiers such as "
                                       "mysql==0.0.3, each package once"),
    (lambda: pf.absolute_path, "an absolute path (letters, digits, '.', '_' and '-' in its segments)"),
    (lambda: pf.owned_dir("/x"), "an absolute path bingo-host may own: not a system directory, nor "
                                 "inside the OS's trees or /x, nor in or around bingo-host's own"),
    (lambda: pf.owned_dir("/x", "/y"), "an absolute path bingo-host may own: not a system directory, "
                                       "nor inside the OS's trees or /x or /y, nor in or around bingo-host's own"),
    (lambda: sf.secret_reference, "ssm:NAME or secretsmanager:ID"),
    (lambda: nf.database_host, "a host name or an IP address (no IPv6 scope id)"),
])
def test_each_check_says_what_it_allows(make, allowed):
    """The configuration reference's column and or_auto's refusal come from it."""
    assert make().allowed == allowed


def test_choice():
    check = f.choice("a", "bb")
    assert check("bb", FIELD) == "bb"
    assert refusal(check, "c") == "must be one of a, bb (got 'c')"
    assert refusal(check, None) == "must be one of a, bb (got null)"


@pytest.mark.parametrize("value, expected", [
    (1, 1), (10, 10), (5, 5),
    (0, NA("an integer between 1 and 10", "0")),
    (11, NA("an integer between 1 and 10", "11")),
    (True, NA("an integer between 1 and 10", "true")),
    ("3", NA("an integer between 1 and 10", "'3'")),
    (2.0, NA("an integer between 1 and 10", "2.0")),
])
def test_integer(value, expected):
    run_table(f.integer(1, 10), value, expected)


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False),
    ("yes", NA("true or false", "'yes'")),
    (1, NA("true or false", "1")),
])
def test_boolean(value, expected):
    run_table(f.boolean, value, expected)


@pytest.mark.parametrize("value, expected", [
    ("a b", "a b"), ("", ""),
    (3, NA("a string", "3")),
    ("a\nb", Refused("must be a single line (got 'a\\nb')")),
    ("a\rb", Refused("must be a single line (got 'a\\rb')")),
    ("a\0b", Refused("must be a single line (got 'a\\x00b')")),
])
def test_string(value, expected):
    run_table(f.string, value, expected)


@pytest.mark.parametrize("value, expected", [
    ("abc", "abc"),
    ("abC", NA("lower-case letters", "'abC'")),
    ("abc1", NA("lower-case letters", "'abc1'")),      # the whole value, not a prefix
    ("1abc", NA("lower-case letters", "'1abc'")),
    (5, NA("lower-case letters", "5")),  # the string check first, in the pattern's words
    ("ab\nc", Refused("must be a single line (got 'ab\\nc')")),
])
def test_pattern(value, expected):
    run_table(f.pattern("[a-z]+", "lower-case letters"), value, expected)


@pytest.mark.parametrize("value, expected", [
    ("auto", "auto"), (3, 3),
    (9, NA("'auto' or an integer between 1 and 5", "9")),
    ("AUTO", NA("'auto' or an integer between 1 and 5", "'AUTO'")),
    ("four", NA("'auto' or an integer between 1 and 5", "'four'")),
])
def test_or_auto(value, expected):
    run_table(f.or_auto(f.integer(1, 5)), value, expected)


def test_or_auto_keeps_the_inner_checks_other_refusals():
    """A refusal that is no 'not allowed' (a system account), or one of an item under the
    field, is the inner check's own."""
    assert refusal(f.or_auto(f.not_system_user(f.pattern("[a-z]+", "a name"))), "root") == \
        "'root' is a system account: the app needs a user of its own"

    def item_check(value, path):
        raise f.NotAllowed(f"{path}[0]", "an item", value)
    assert refusal(f.or_auto(allows("items", item_check)), "x", f"{FIELD}[0]") == \
        "must be an item (got 'x')"


@pytest.mark.parametrize("value, expected", [
    (None, None), (3, 3), (9, NA("an integer between 1 and 5", "9"))])
def test_optional(value, expected):
    run_table(f.optional(f.integer(1, 5)), value, expected)


# -- accounts --

@pytest.mark.parametrize("value, expected", [
    ("bingo", "bingo"), ("xsystemd-", "xsystemd-"), ("Bingo", "bingo"),
    ("root", Refused("'root' is a system account: the app needs a user of its own")),
    ("ROOT", Refused("'root' is a system account: the app needs a user of its own")),  # after inner
    ("systemd-network", Refused("'systemd-network' is a system account: the app needs a user of its own")),
    ("www-data", Refused("'www-data' is a system account: the app needs a user of its own")),
    ("nginx", Refused("'nginx' is a system account: the app needs a user of its own")),
    ("mysql", Refused("'mysql' is a system account: the app needs a user of its own")),
    (7, NA("a string", "7")),
])
def test_not_system_user(value, expected):
    run_table(f.not_system_user(allows("a string", lambda v, p: f.string(v, p).lower())), value, expected)


@pytest.mark.parametrize("value, expected", [
    ("bingo", "bingo"), ("app_data", "app_data"),
    ("MySQL", Refused("'MySQL' is MariaDB's own schema")),
    ("information_schema", Refused("'information_schema' is MariaDB's own schema")),
    (7, NA("a string", "7")),
])
def test_not_in(value, expected):
    run_table(f.not_in(f.DB_SYSTEM_SCHEMAS, "MariaDB's own schema", f.string), value, expected)


def test_not_in_returns_what_the_inner_check_made_of_the_value():
    assert f.not_in(frozenset({"x"}), "reserved", allows("x", lambda v, p: v.strip()))(" ok ", FIELD) == "ok"


def test_the_database_accounts_bingo_host_uses_are_reserved():
    assert {"root", "mysql", "bingobackup", "bingodump", "bingorestore"} <= f.DB_SYSTEM_USERS


# -- names on the network (name_fields.py) --

FQDN = "a fully qualified host name (letters, digits, '-' and dots), not an IP address"

@pytest.mark.parametrize("value, expected", [
    ("Bingo.Example.COM.", "bingo.example.com"), ("bingo.EXAMPLEX.", "bingo.examplex"),
    ("a-1.example.org", "a-1.example.org"),
    ("x" * 63 + ".com", "x" * 63 + ".com"),
    ("x" * 64 + ".com", NA(FQDN, "'" + "x" * 39 + "...")),
    ("10.0.0.1", Refused("must be a host name, not an IP address (got '10.0.0.1')")),
    ("::1", Refused("must be a host name, not an IP address (got '::1')")),
    ("fe80::1%eth0", NA(FQDN, "'fe80::1%eth0'")),
    ("localhost", NA(FQDN, "'localhost'")),
    ("10.0.0", NA(FQDN, "'10.0.0'")),
    ("300.1.1.1", NA(FQDN, "'300.1.1.1'")),
    ("a..example.com", NA(FQDN, "'a..example.com'")),
    ("-a.example.com", NA(FQDN, "'-a.example.com'")),
    ("_", NA(FQDN, "'_'")),
    (5, NA(FQDN, "5")),
])
def test_domain_name(value, expected):
    run_table(nf.domain_name, value, expected)


def test_a_host_name_is_at_most_253_characters():
    name = ".".join(["a" * 61] * 4) + ".co"  # 4 * 62 + 3 = 251... with the 2 below, 253
    assert nf.domain_name("bb" + name, FIELD) == "bb" + name
    assert refusal(nf.domain_name, "bbb" + name).startswith(f"must be {FQDN} (got 'bbbaaa")


SERVER_NAMES = "'_' (any name) or host names, as a list or separated by spaces"


@pytest.mark.parametrize("value, expected", [
    ("_", ("_",)),
    ("Bingo.example.com  www.example.com", ("bingo.example.com", "www.example.com")),
    (["A.example.com", "*.example.com", "10.0.0.1", "localhost"],
     ("a.example.com", "*.example.com", "10.0.0.1", "localhost")),
    ("ab.com", ("ab.com",)),
    ([], NA(SERVER_NAMES, "a list")),
    ("", NA(SERVER_NAMES, "''")),
    (5, NA(SERVER_NAMES, "5")),
    ({"a.com": 1}, NA(SERVER_NAMES, "a mapping")),
    (["_", "a.com"], Refused("'_' must stand alone (got '_ a.com')")),
    ("a.com _", Refused("'_' must stand alone (got 'a.com _')")),
    (["ok.com", 5], NA("a string", "5", f"{FIELD}[1]")),
    (["ok.com", "a\nb"], Refused("must be a single line (got 'a\\nb')", f"{FIELD}[1]")),
    ("a\0b.com", Refused("'a\\x00b.com' is not '_' or a host name")),
    ("*.-a.com", Refused("'*.-a.com' is not '_' or a host name")),
    ("*.*.a.com", Refused("'*.*.a.com' is not '_' or a host name")),
    ("a.com;", Refused("'a.com;' is not '_' or a host name")),
    ("fe80::1%eth0;", Refused("'fe80::1%eth0;' is not '_' or a host name")),
])
def test_server_names(value, expected):
    run_table(nf.server_names, value, expected)


REQUIREMENTS = "a list of at most 32 requirement specifiers such as mysql==0.0.3, each package once"
NOT_A_REQUIREMENT = ("is not a requirement specifier such as mysql==0.0.3 (a package name, optional "
                     "[extras] and version clauses; no options, URLs or markers)")


@pytest.mark.parametrize("value, expected", [
    ([], ()), (["mysql==0.0.3"], ("mysql==0.0.3",)), ([" mysql == 0.0.3 "], ("mysql == 0.0.3",)),
    (["Foo.Bar_baz[a,b-c]>=1.0,!=1.2.*", "x~=2.0", "y", "z===1.0+local"],
     ("Foo.Bar_baz[a,b-c]>=1.0,!=1.2.*", "x~=2.0", "y", "z===1.0+local")),
    ("mysql==0.0.3", NA(REQUIREMENTS, "'mysql==0.0.3'")),
    (["mysql==0.0.3", 3], NA("a string", "3", f"{FIELD}[1]")),
    (["-r other.txt"], Refused(f"'-r other.txt' {NOT_A_REQUIREMENT}", f"{FIELD}[0]")),
    (["--index-url https://evil/simple"], Refused(f"'--index-url https://evil/simple' {NOT_A_REQUIREMENT}",
                                                  f"{FIELD}[0]")),
    (["x @ https://e/x.whl"], Refused(f"'x @ https://e/x.whl' {NOT_A_REQUIREMENT}", f"{FIELD}[0]")),
    (["x==1; python_version>'3'"], Refused(f"\"x==1; python_version>'3'\" {NOT_A_REQUIREMENT}", f"{FIELD}[0]")),
    (["x==1 -e ."], Refused(f"'x==1 -e .' {NOT_A_REQUIREMENT}", f"{FIELD}[0]")),
    (["x==1\n--index-url=h"], Refused("must be a single line (got 'x==1\\n--index-url=h')", f"{FIELD}[0]")),
    (["Foo_Bar==1", "foo-bar==2"], Refused(f"foo-bar is already overridden by {FIELD}[0]", f"{FIELD}[1]")),
    ([f"p{i}" for i in range(33)], NA(REQUIREMENTS, "33 of them")),
    ([f"p{i}" for i in range(32)], tuple(f"p{i}" for i in range(32))),
])
def test_requirement_specifiers(value, expected):
    run_table(f.requirement_specifiers, value, expected)


@pytest.mark.parametrize("value, expected", [
    ("db.internal", "db.internal"), ("db", "db"), ("10.0.0.5", "10.0.0.5"), ("fd00::5", "fd00::5"),
    ("fe80::1%eth0", NA("a host name or an IP address (no IPv6 scope id)", "'fe80::1%eth0'")),
    ("db host", NA("a host name or an IP address (no IPv6 scope id)", "'db host'")),
    (3306, NA("a host name or an IP address (no IPv6 scope id)", "3306")),
])
def test_database_host(value, expected):
    run_table(nf.database_host, value, expected)


EMAIL_ALLOWED = ("an e-mail address such as admin@example.com (letters, digits and ._+- before the @, "
                 "not starting with '-' or '.')")


@pytest.mark.parametrize("value, expected", [
    ("admin@example.com", "admin@example.com"), ("a.b+c_d-e@mail.example.org", "a.b+c_d-e@mail.example.org"),
    *[(bad, NA(EMAIL_ALLOWED, repr(bad)[:40] + "..." * (len(repr(bad)) > 40))) for bad in (
        "-x@example.com", ".x@example.com", "x.@example.com", "a..b@example.com", "x@localhost",
        "x@10.0.0.1", "example.com", "x" * 65 + "@example.com", "a b@example.com")],
    (5, NA(EMAIL_ALLOWED, "5")),
])
def test_email(value, expected):
    run_table(nf.email, value, expected)


# -- schedules and sizes --

SIZE = "'auto', 0, or a size between 16M and 32G such as 512M or 2G"


@pytest.mark.parametrize("value, expected", [
    ("auto", "auto"), (0, 0), ("off", 0), ("none", 0), ("512M", 512), ("2G", 2048), ("2GiB", 2048),
    ("1gb", 1024), (" 1 G ", 1024), ("16M", 16), ("32G", 32768), ("32768M", 32768),
    ("15M", NA(SIZE, "'15M'")), ("33G", NA(SIZE, "'33G'")), ("32769M", NA(SIZE, "'32769M'")),
    ("2T", NA(SIZE, "'2T'")), (512, NA(SIZE, "512")), ("0", NA(SIZE, "'0'")),
    ("AUTO", NA(SIZE, "'AUTO'")), (None, NA(SIZE, "null")), ([], NA(SIZE, "a list")),
    (False, NA(SIZE, "false")), (0.0, NA(SIZE, "0.0")),  # false == 0 == 0.0: not "no swap"
])
def test_swap_size(value, expected):
    run_table(f.swap_size, value, expected)


@pytest.mark.parametrize("mib, text", [
    ("auto", "auto"), (0, 0), (16, "16M"), (512, "512M"), (1024, "1G"), (1536, "1536M"), (2048, "2G"),
    (32768, "32G")])
def test_swap_text_is_what_swap_size_reads_back(mib, text):
    assert f.swap_text(mib) == text
    assert f.swap_size(text, FIELD) == mib


SCHEDULE = "one of hourly, daily, weekly, monthly or an OnCalendar= expression such as '*-*-* 03:00:00'"


@pytest.mark.parametrize("value, expected", [
    ("daily", "daily"), ("  weekly ", "weekly"), ("*-*-* 03:00:00", "*-*-* 03:00:00"),
    ("Mon..Fri 02:30", "Mon..Fri 02:30"), ("x" * 64, "x" * 64),
    ("x" * 65, NA(SCHEDULE, "'" + "x" * 39 + "...")), ("-daily", NA(SCHEDULE, "'-daily'")),
    ("daily; reboot", NA(SCHEDULE, "'daily; reboot'")), ("", NA(SCHEDULE, "''")),
    (5, NA(SCHEDULE, "5")), ("a\nb", Refused("must be a single line (got 'a\\nb')")),
])
def test_schedule(value, expected):
    run_table(f.schedule, value, expected)


# -- AWS names --

PREFIX = ("empty or path segments (letters, digits and ._-, not starting with '.' or '-') each ending "
          "in '/', such as 'bingo-host/' or 'prod/bingo/'")

@pytest.mark.parametrize("value, expected", [
    ("", ""), ("bingo-host/", "bingo-host/"), ("Prod/Bingo_2/", "Prod/Bingo_2/"), ("_a/", "_a/"),
    ("a/" * 8, "a/" * 8), ("x" * 63 + "/", "x" * 63 + "/"),
    *[(bad, NA(PREFIX, f.shown(bad)))
      for bad in ("a", "/a/", ".a/", "-a/", "a//", "a/" * 9, "x" * 64 + "/", "a b/")],
    (5, NA(PREFIX, "5")),
])
def test_s3_prefix(value, expected):
    run_table(f.s3_prefix, value, expected)


@pytest.mark.parametrize("check, good, bad", [
    (f.kms_key_arn, "arn:aws:kms:eu-west-1:123456789012:alias/bingo-bundle-signing",
     "arn:aws:kms:eu-west-1:12345678901:key/x"),
    (f.s3_bucket, "bingo-backups-1", "bingo.backups"),
])
def test_aws_names(check, good, bad):
    assert check(good, FIELD) == good
    assert refusal(check, bad).startswith("must be ")


@pytest.mark.parametrize("value, expected", [
    ("d-ABC123456", "d-ABC123456"), ("a", "a"), ("0_x-y", "0_x-y"), ("a" * 64, "a" * 64),
    *[(bad, NA("1 to 64 letters, digits, '_' and '-', starting with a letter or digit", f.shown(bad)))
      for bad in ("", "-d", "_d", "a" * 65, "d/x", "d.1", "..", "d x", "d-1\u00e9")],
])
def test_deployment_id(value, expected):
    run_table(f.deployment_id, value, expected)


@pytest.mark.parametrize("value, expected", [
    ("snap-0123abcd", "snap-0123abcd"), ("snap-0123456789abcdef0", "snap-0123456789abcdef0"),
    *[(bad, NA("an EBS snapshot id such as snap-0123456789abcdef0", f.shown(bad)))
      for bad in ("snap-0123abc", "snap-0123456789abcdef", "snap-0123456789ABCDEF0", "snap-0123abcd0",
                  "vol-0123abcd", "xsnap-0123abcd", "snap-0123abcg", "")],
])
def test_snapshot_id(value, expected):
    run_table(f.snapshot_id, value, expected)


# -- paths (path_fields.py) --

SEGMENT_RULE = ("only letters, digits, '.', '_' and '-' are allowed in path segments (no '..', no "
                "empty segments, no spaces or quotes; got {})")
ABSOLUTE = "an absolute path (letters, digits, '.', '_' and '-' in its segments)"


@pytest.mark.parametrize("value, expected", [
    ("/srv/music/", "/srv/music"), ("/Xfiles/X", "/Xfiles/X"), ("/a/b.c_d-e", "/a/b.c_d-e"),
    ("srv/music", Refused("must be an absolute path (got 'srv/music')")),
    ("", Refused("must be an absolute path (got '')")),
    *[(bad, Refused(SEGMENT_RULE.format(f.shown(bad))))
      for bad in ("/", "//", "/a//b", "/a/../b", "/a/./b", "/a/.hidden", "/a b", "/a'b")],
    (5, NA(ABSOLUTE, "5")),
])
def test_absolute_path(value, expected):
    run_table(pf.absolute_path, value, expected)


@pytest.mark.parametrize("child, parent, expected", [
    ("/a", "/a", True), ("/a/b", "/a", True), ("/a/b", "/a/", True), ("/a", "/", True),
    ("/ab", "/a", False), ("/a", "/a/b", False), ("/Y/b", "/X", False), ("/Xa", "/X", False),
])
def test_within(child, parent, expected):
    assert pf.within(child, parent) is expected


def owned(value: str, reason: str) -> tuple[str, Refused]:
    return value, Refused(reason)


@pytest.mark.parametrize("value, expected", [
    ("/srv/music-bingo", "/srv/music-bingo"), ("/data", "/data"), ("/usrx/a", "/usrx/a"),
    ("/var/lib/music", "/var/lib/music"), ("/srv/music/", "/srv/music"),
    owned("/etc", "/etc is /etc, which belongs to the system"),
    owned("/etc/x", "/etc/x is inside /etc, which belongs to the system"),
    owned("/var/run/x", "/var/run/x is inside /var/run, which belongs to the system"),
    owned("/lib64/x", "/lib64/x is inside /lib64, which belongs to the system"),
    owned("/lib", "/lib is /lib, which belongs to the system"),
    owned("/libexec", "/libexec is /libexec, which belongs to the system"),
    owned("/var", "/var is a system directory: name a directory of its own under it (such as "
                  "/var/music-bingo)"),
    owned("/srv", "/srv is a system directory: name a directory of its own under it (such as "
                  "/srv/music-bingo)"),
    owned("/opt/bingo-host", "/opt/bingo-host is /opt/bingo-host, which is bingo-host's own"),
    owned("/opt/bingo-host/x", "/opt/bingo-host/x is inside /opt/bingo-host, which is bingo-host's own"),
    owned("/var/cache", "/var/cache is a system directory: name a directory of its own under it "
                        "(such as /var/cache/music-bingo)"),
    ("srv", Refused("must be an absolute path (got 'srv')")),
])
def test_owned_dir(value, expected):
    run_table(pf.owned_dir(), value, expected)


@pytest.mark.parametrize("value, expected", [
    ("/backup", "/backup"),
    owned("/data", "/data is /data, which belongs to the system"),
    owned("/data/x", "/data/x is inside /data, which belongs to the system"),
])
def test_owned_dir_with_reserved_trees(value, expected):
    run_table(pf.owned_dir("/data", "/mnt/vol"), value, expected)


def test_owned_dir_refuses_a_directory_around_its_own_trees(monkeypatch):
    monkeypatch.setattr(pf, "OWN_TREES", ("/srv/tools/bingo-host",))
    assert refusal(pf.owned_dir(), "/srv/tools") == \
        "/srv/tools contains /srv/tools/bingo-host, which is bingo-host's own"


@pytest.mark.parametrize("value", ["/dev/sdf", "/dev/xvdf", "/dev/nvme1n1", "/dev/nvme1n1p2", "/dev/loop0",
                                   "/dev/mapper/vg-data", "/dev/disk/by-id/nvme-Amazon_vol0abc"])
def test_block_device(value):
    assert pf.block_device(value, FIELD) == value


@pytest.mark.parametrize("value", ["/dev/shm/x", "/dev/tty", "/dev/sdf/../sda", "sdf", "/dev/loop0;"])
def test_block_device_refused(value):
    reason = refusal(pf.block_device, value)
    assert reason.startswith("must be a block device under /dev such as")
    assert reason.endswith(f"(got {value!r})")


# -- secrets' sources (secret_fields.py) --

def literal(length: int) -> Refused:
    """The refusal of a literal password: its length, never the value."""
    return Refused("a literal password needs 12 to 128 characters from letters, digits and "
                   "!#$&()*+,./:<=>?@[]^_{|}~- (no quotes, backslash, ';', '%' or spaces); prefer "
                   f"'generate', 'ssm:NAME' or 'secretsmanager:ID' (got a literal of {length} characters)")


def ssm(value: str) -> Refused:
    return Refused("ssm: must be followed by a parameter name (/path/to/name: letters, digits and _.-) "
                   f"or ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME) (got {value!r})")


PASSWORD = ("'generate', ssm:NAME, secretsmanager:ID or a literal password (12 to 128 characters; "
            "discouraged)")


@pytest.mark.parametrize("value, expected", [
    ("generate", "generate"), ("ssm:/bingo/db", "ssm:/bingo/db"), ("secretsmanager:bingo/db", "secretsmanager:bingo/db"),
    ("a" * 12, "a" * 12), ("a" * 128, "a" * 128), ("Ab1!#$&()*+,./:<=>?@[]^_{|}~-", "Ab1!#$&()*+,./:<=>?@[]^_{|}~-"),
    ("a" * 11, literal(11)), ("a" * 129, literal(129)), ("abcdefghijk'l", literal(13)),
    ("abcdefghijk;l", literal(13)), ("abcdefghijk%l", literal(13)), ("abcdefghij kl", literal(13)),
    ("SSM:/bingo/db12", "SSM:/bingo/db12"), ("Xylophone-Secret-1", "Xylophone-Secret-1"), ("ssm:bad name", ssm("ssm:bad name")), ("ssm:", ssm("ssm:")),
    ("secretsmanager:bad name", Refused("secretsmanager: must be followed by a secret name (letters, digits "
                                        "and /_+=.@!-) or ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME) "
                                        "(got 'secretsmanager:bad name')")),
    (5, NA(PASSWORD, "5")),
    ("secret\nline-2-of-it", Refused("must be a single line (got a literal of 19 characters)")),
    ("ssm:/a\nb", Refused("must be a single line (got 'ssm:/a\\nb')")),
    ("*****", Refused("'*****' is how `config check` masks a literal password: write the password "
                      "here, or better 'ssm:NAME' or 'secretsmanager:ID'")),
])
def test_password(value, expected):
    run_table(sf.password, value, expected)


@pytest.mark.parametrize("value, expected", [
    ("ssm:/mail/pw", "ssm:/mail/pw"), ("a" * 12, "a" * 12), ("a" * 11, literal(11)),
    ("ssm:x y", ssm("ssm:x y")),
    ("generate", Refused("cannot be 'generate' (the mail service issues the password): use 'ssm:NAME' or "
                         "'secretsmanager:ID'")),
])
def test_mail_password(value, expected):
    run_table(sf.mail_password, value, expected)


@pytest.mark.parametrize("value, expected", [
    ("generate", "generate"), ("ssm:/bingo/key", "ssm:/bingo/key"), ("secretsmanager:k", "secretsmanager:k"),
    ("ssm:x y", ssm("ssm:x y")),
    *[(literal, Refused("must be 'generate', 'ssm:NAME' or 'secretsmanager:ID' (the value itself never goes "
                        f"into the config file; got a literal of {len(literal)} characters)"))
      for literal in ("a-literal-secret-1", "SSM:/bingo/key", "")],
    (None, NA("'generate', ssm:NAME or secretsmanager:ID", "null")),
    ("a\nb", Refused("must be a single line (got a literal of 3 characters)")),
])
def test_secret_source(value, expected):
    run_table(sf.secret_source, value, expected)


@pytest.mark.parametrize("value, expected", [
    ("ssm:/bingo/ca", "ssm:/bingo/ca"), ("secretsmanager:ca", "secretsmanager:ca"), ("ssm:x y", ssm("ssm:x y")),
    *[(literal, Refused("must be 'ssm:NAME' or 'secretsmanager:ID' (the secret itself never goes into the "
                        f"config file; got a literal of {len(literal)} characters)"))
      for literal in ("generate", "a-literal-secret-1", "SSM:/bingo/ca")],
    (None, NA("ssm:NAME or secretsmanager:ID", "null")),
    ("a\rb", Refused("must be a single line (got a literal of 3 characters)")),
])
def test_secret_reference(value, expected):
    run_table(sf.secret_reference, value, expected)


@pytest.mark.parametrize("value, ok", [
    ("AKIAIOSFODNN7EXAMPLE", True), ("user+tag@example.com", True), ("a" * 128, True), ("a" * 129, False),
    ("", False), ("a b", False), ("a%b", False)])
def test_smtp_username(value, ok):
    if ok:
        assert sf.smtp_username(value, FIELD) == value
    else:
        assert refusal(sf.smtp_username, value) == \
            f"must be 1 to 128 letters, digits and @._+=- (no spaces, quotes or '%') (got {f.shown(value)})"
