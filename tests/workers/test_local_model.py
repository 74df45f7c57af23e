"""The installed llama.cpp is portable (no AVX-512, no AMX), and the local provider proves its model."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import load_settings
from tests.support import ROOT
from workers.providers import ProviderError
from workers.providers.local import LocalProvider, enabled_cpu_features, forbidden_cpu_features

# AVX-512 uses the zmm registers and the opmask registers ({%k1}..{%k7}, kmov*); AMX the tile instructions.
AVX512_OPERAND = re.compile(r"%zmm\d+|\{%k[1-7]\}")
AVX512_MNEMONIC = re.compile(r"^k(mov|and|or|xor|not|shift|test|add|unpck)[bwdq]")
AMX_MNEMONIC = re.compile(r"^(ldtilecfg|sttilecfg|tilerelease|tilezero|tileload\w*|tilestore\w*|tdp\w+)$")


def llama_libraries() -> list[Path]:
    import llama_cpp

    package = Path(llama_cpp.__file__).parent
    libraries = sorted(p for p in package.rglob("*.so*") if p.is_file())
    assert libraries, f"no shared library found under {package}"
    return libraries


def offending_instructions(library: Path, limit: int = 5) -> list[str]:
    """Up to `limit` disassembled instructions of `library` that use AVX-512 or AMX."""
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is required to inspect the llama.cpp build: apt-get install binutils"
    found: list[str] = []
    with subprocess.Popen(
        [objdump, "-d", "--no-show-raw-insn", "-M", "att", str(library)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            address, tab, instruction = line.partition(":\t")
            if not tab or not address.strip():
                continue
            instruction = instruction.split("#", 1)[0].strip()
            mnemonic = instruction.split(None, 1)[0] if instruction else ""
            if AVX512_OPERAND.search(instruction) or AVX512_MNEMONIC.match(mnemonic) or AMX_MNEMONIC.match(mnemonic):
                found.append(f"{library.name}: {line.strip()}")
                if len(found) >= limit:
                    proc.kill()
                    break
    return found


def test_system_info_enables_no_avx512_or_amx():
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    enabled = enabled_cpu_features(info)
    assert "AVX2" in enabled, info  # the portable target: AVX2/FMA/F16C
    assert forbidden_cpu_features(info) == [], info


def test_shared_libraries_hold_no_avx512_or_amx_instructions():
    libraries = llama_libraries()
    offending = [hit for library in libraries for hit in offending_instructions(library)]
    assert offending == [], "\n".join(offending)


def test_the_instruction_scan_sees_avx512_and_amx(tmp_path):
    """The scan above is only worth something if it recognises the instructions it looks for."""
    if shutil.which("as") is None:
        pytest.fail("as (binutils) is required")
    source = tmp_path / "probe.s"
    source.write_text(
        ".text\nvaddps %zmm1, %zmm2, %zmm3\nkmovw %k1, %eax\nvaddps %ymm1, %ymm2, %ymm3{%k1}\n"
        "tilezero %tmm0\nldtilecfg (%rax)\nvaddps %ymm1, %ymm2, %ymm3\n"
    )
    obj = tmp_path / "probe.o"
    subprocess.run(["as", "-o", str(obj), str(source)], check=True)
    assert len(offending_instructions(obj, limit=100)) == 5


def test_the_feature_check_parses_system_info():
    native = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 |"
    portable = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 0 | AMX_INT8 = 0 |"
    assert forbidden_cpu_features(native) == ["AMX_INT8", "AVX512", "AVX512_VNNI"]
    assert forbidden_cpu_features(portable) == []


def test_make_install_check_passes_on_this_build():
    """What the Makefile runs after installing: it exits 0 and prints the system info."""
    result = subprocess.run(
        [sys.executable, "-m", "workers.providers.local"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "AVX2 = 1" in result.stdout


def test_prove_generates_one_token_with_the_real_model():
    LocalProvider(load_settings({})).prove()


def test_prove_fails_on_a_file_that_is_not_a_model(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really" * 100)
    with pytest.raises(ProviderError, match="could not be loaded"):
        LocalProvider(load_settings({"LOCAL_MODEL_PATH": str(broken)})).prove()
