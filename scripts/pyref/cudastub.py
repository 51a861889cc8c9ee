"""Builds stand-in CUDA libraries so that PyPI's Linux torch wheel runs on the CPU.

PyPI's torch for Linux x86_64 links libtorch_cpu, libtorch_cuda and libtorch_python
against the CUDA libraries (libcudart, libcublas, libcudnn, ...), which come as
several GB of nvidia-* wheels. The test references never touch a GPU, so this
script writes one small shared library per missing CUDA soname that defines
every symbol torch's libraries import from it; every function answers
"no device" (100, cudaErrorNoDevice / CUDA_ERROR_NO_DEVICE), and the
error-string functions a message. torch then reports torch.cuda.is_available()
== False and runs on the CPU as the CPU wheel would.

Usage: python cudastub.py SITE_PACKAGES   (needs readelf and cc)
"""

import os
import re
import subprocess
import sys
import tempfile


def dyn(path):
    out = subprocess.run(["readelf", "-W", "--dyn-syms", "-d", path],
                         capture_output=True, text=True, check=True).stdout
    needed, undef, defined = [], {}, set()
    for line in out.splitlines():
        m = re.search(r"\(NEEDED\)\s+Shared library: \[(.+)\]", line)
        if m:
            needed.append(m.group(1))
            continue
        f = line.split()
        if len(f) < 8 or not f[0].endswith(":"):
            continue
        typ, bind, ndx, name = f[3], f[4], f[6], f[7]
        base, _, ver = name.partition("@")
        ver = ver.lstrip("@")
        if ndx == "UND":
            if base and bind != "WEAK":
                undef[base] = (typ, ver)
        else:
            defined.add(base)
    return needed, undef, defined


def resolvable(soname, dirs):
    for d in dirs:
        if os.path.exists(os.path.join(d, soname)):
            return True
    r = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True)
    return soname in {l.split()[0] for l in r.stdout.splitlines()[1:] if l.strip()}


def main():
    site = sys.argv[1]
    tlib = os.path.join(site, "torch", "lib")
    outdir = os.path.join(site, "nvidia", "cu13", "lib")
    libs = [os.path.join(tlib, f) for f in os.listdir(tlib) if ".so" in f]
    libs += [os.path.join(site, "torch", f) for f in os.listdir(os.path.join(site, "torch"))
             if f.endswith(".so")]
    needed, undef, defined = set(), {}, set()
    for lib in libs:
        n, u, d = dyn(lib)
        needed.update(n)
        undef.update(u)
        defined |= d
    own = {os.path.basename(p) for p in libs}
    missing = sorted(s for s in needed if s not in own and not resolvable(s, [tlib, outdir]))
    if not missing:
        print("cudastub: nothing missing")
        return
    # Symbols no torch library defines; the system's own libraries (libc,
    # libstdc++, ...) carry GLIBC_/GLIBCXX_/CXXABI_/GCC_ versions or are
    # resolved from them, so keep only the ones versioned with a missing soname
    # or unversioned and not C++-mangled torch symbols.
    sysver = re.compile(r"^(GLIBC|GLIBCXX|CXXABI|GCC|OMP|GOMP|ZLIB|QUADMATH|GFORTRAN)")
    syms = {}
    for name, (typ, ver) in undef.items():
        if name in defined or (ver and sysver.match(ver)):
            continue
        if not ver and (name.startswith("_Z") or name.startswith("__")):
            continue
        syms[name] = (typ, ver)
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "stub.c")
        with open(src, "w") as f:
            f.write('static const char msg[] = "CUDA stand-in: no CUDA device (CPU-only test reference)";\n')
            for name, (typ, _) in sorted(syms.items()):
                if typ == "OBJECT":
                    f.write("char %s[4096] __attribute__((aligned(64)));\n" % name)
                elif re.search(r"(ErrorString|ErrorName|StatusString|StatusName)$", name):
                    f.write("const char *%s(void) { return msg; }\n" % name)
                else:
                    f.write("int %s(void) { return 100; }\n" % name)
        for so in missing:
            vs = os.path.join(tmp, so + ".map")
            mine = sorted(n for n, (_, v) in syms.items() if v == so)
            with open(vs, "w") as f:
                if mine:
                    f.write("%s {\n  global:\n" % so)
                    for n in mine:
                        f.write("    %s;\n" % n)
                    f.write("};\n")
                f.write("STUB_BASE { global: *; };\n" if mine else "{ global: *; };\n")
            subprocess.run(["cc", "-shared", "-fPIC", "-O0", "-w", "-o", os.path.join(outdir, so),
                            "-Wl,-soname," + so, "-Wl,--version-script=" + vs, src], check=True)
        print("cudastub: %d stand-in libraries, %d symbols, in %s" % (len(missing), len(syms), outdir))


if __name__ == "__main__":
    main()
