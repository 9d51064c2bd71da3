"""The C++ library as an installed CMake package (cpp_host/CMakeLists.txt's install rules): the session's host build
installed into a prefix, then a separate project that finds it with find_package(dcrt_host CONFIG), links
dcrt::host, and gets the library's one-line error for a bundle that does not exist.
"""

from __future__ import annotations

import subprocess

import dcrt

CONSUMER_CMAKE = """cmake_minimum_required(VERSION 3.18)
project(consumer LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(dcrt_host {version} CONFIG REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE dcrt::host)
"""

CONSUMER_MAIN = """#include <dcrt/host.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) return 3;
  try {
    auto engine = dcrt::Engine::open(argv[1]);
    std::printf("opened %s\\n", engine->describe().c_str());
    return 0;
  } catch (const dcrt::UsageError& e) {
    std::fprintf(stderr, "%s\\n", e.what());
    return 2;
  }
}
"""


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([*map(str, args)], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_installed_package_links_into_another_project(host_build, tmp_path):
    prefix, source, build = tmp_path / "prefix", tmp_path / "consumer", tmp_path / "consumer-build"
    run("cmake", "--install", host_build, "--prefix", prefix)
    assert (prefix / "include" / "dcrt" / "host.h").is_file()
    assert (prefix / "lib" / "cmake" / "dcrt_host" / "dcrt_hostConfigVersion.cmake").is_file()
    source.mkdir()
    major_minor = ".".join(dcrt.__version__.split(".")[:2])  # the package's version is dcrt's
    (source / "CMakeLists.txt").write_text(CONSUMER_CMAKE.format(version=major_minor))
    (source / "main.cpp").write_text(CONSUMER_MAIN)
    run("cmake", "-S", source, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release")
    run("cmake", "--build", build, "-j", "2")
    missing = tmp_path / "no-bundle"
    done = subprocess.run([build / "consumer", missing], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"{missing} does not exist: build one with `dcrt build --res tiny --engine aoti`\n"
