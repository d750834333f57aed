import pytest

from scheduler.extra_specs_ops import matches

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "requirement", "expected"),
    [
        ("QEMU", "QEMU", True),
        ("QEMU", "qemu", False),
        (None, "QEMU", False),
        ("4", "= 4", True),
        ("5", "= 4", True),  # "=" means at least
        ("3", "= 4", False),
        ("4.0", "== 4", True),
        ("4", "!= 4", False),
        ("8", ">= 8", True),
        ("8", "<= 7", False),
        ("abc", "= 4", False),  # not a number never matches a numeric operator
        ("4", "= abc", False),
        ("b", "s== b", True),
        ("b", "s!= b", False),
        ("a", "s< b", True),
        ("b", "s<= b", True),
        ("c", "s> b", True),
        ("a", "s>= b", False),
        ("sse4 avx2 aes", "<in> avx2", True),
        ("sse4 aes", "<in> avx2", False),
        ("sse4 avx2 aes", "<all-in> aes avx2", True),
        ("sse4 aes", "<all-in> aes avx2", False),
        ("aarch64", "<or> x86_64 <or> aarch64", True),
        ("ppc64le", "<or> x86_64 <or> aarch64", False),
        ("x86_64", "<or> x86_64", True),
        (None, "<or> a <or> b", False),
        ("4", "=", False),  # an operator with nothing to compare against
        (8192.0, ">= 8192", True),  # host values need not be strings
    ],
)
def test_matches(value, requirement, expected):
    assert matches(value, requirement) is expected
