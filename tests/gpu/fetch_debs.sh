#!/usr/bin/env bash
# Downloads the runtime libraries triad needs (OpenMPI, OpenBLAS, GLPK,
# libcsv, libinih and their dependencies) as .deb files into .debs/ (git
# ignores it), for a GPU machine that has no package registry. There:
#   for f in .debs/*.deb; do dpkg -x "$f" .debs/root; done
#   export LD_LIBRARY_PATH=$PWD/.debs/root/usr/lib/x86_64-linux-gnu:$PWD/.debs/root/usr/lib/x86_64-linux-gnu/openmpi/lib
#   export PATH=$PWD/.debs/root/usr/bin:$PATH OPAL_PREFIX=$PWD/.debs/root/usr
# tests/check_gpu.sh does this itself when .debs/ is present.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .debs
roots="openmpi-bin libopenmpi3 libopenblas0-pthread libglpk40 libcsv3 libinih1 libgomp1"
# base packages every Debian/Ubuntu image has: not carried
skip='^(libc6|libgcc-s1|libstdc\+\+6|zlib1g|libzstd1|liblzma5|libbz2-1.0|debconf|dpkg|perl-base|libcrypt1|libssl3|libudev1|libsystemd0|libcap2|libselinux1|libpcre2-8-0|libgpg-error0|libgcrypt20|liblz4-1|libtinfo6|tar|coreutils|base-files|libdb5.3|libaudit1|libaudit-common|libcap-ng0|libpam0g|libpam-modules|libpam-modules-bin|libpam-runtime|libsemanage2|libsemanage-common|libsepol2|libbsd0|libmd0|sensible-utils|mawk|adduser|passwd|login|lsb-base|sysvinit-utils|init-system-helpers|libacl1|libattr1|libgmp10|perl|perl-modules-.*|libperl.*|ucf|gcc-12-base|libdebconfclient0|readline-common|libreadline8)$'
pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances $roots 2>/dev/null | grep -E '^[a-z0-9]' | sort -u | grep -Ev "$skip")
(cd .debs && apt-get download $pkgs >/dev/null)
du -sh .debs
