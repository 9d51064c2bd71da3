// Writing a video (include/dcrt/host.h): PNG frames (libpng), and H.264 mp4 through the ffmpeg on PATH, as
// dcrt.video writes them. Every output is written under a temporary name and renamed.
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <dcrt/host.h>

#include "errors.h"
#include "files.h"

extern char** environ;

namespace dcrt {

using dcrt_host::HostError;

namespace {

std::string frame_name(int k) {
  char name[32];
  std::snprintf(name, sizeof(name), "%03d.png", k);
  return name;
}

void check_video(const Video& video) {
  const size_t frame = static_cast<size_t>(video.height) * video.width * 3;
  if (video.frames < 1 || video.rgb.size() != frame * video.frames)
    throw HostError("the video must hold frames x height x width x 3 bytes");
}

// The frames into `dir` (which exists); on failure the ones written are removed.
void write_pngs(const Video& video, const std::string& dir) {
  const size_t frame = static_cast<size_t>(video.height) * video.width * 3;
  try {
    for (int k = 0; k < video.frames; ++k)
      dcrt_host::write_png_rgb(dir + "/" + frame_name(k), video.rgb.data() + k * frame, video.height, video.width);
  } catch (...) {
    for (int k = 0; k < video.frames; ++k) std::remove((dir + "/" + frame_name(k)).c_str());
    throw;
  }
}

void remove_pngs(const Video& video, const std::string& dir) {
  for (int k = 0; k < video.frames; ++k) std::remove((dir + "/" + frame_name(k)).c_str());
  rmdir(dir.c_str());
}

// Runs `argv` found on PATH (no shell, so no quoting of paths); -1 when it cannot be started.
int spawn(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int frame_rate(const Video& video, int fps) {
  const int rate = fps > 0 ? fps : video.fps;
  if (rate < 1) throw HostError("the video records no fps: pass one (--fps)");
  return rate;
}

// H.264 in yuv420p (what players expect, as dcrt.video writes it) from PNG frames in a temporary folder, to `mp4`
// through `mp4`.partial.mp4. False when no ffmpeg is on PATH.
bool ffmpeg_encode(const Video& video, const std::string& mp4, int fps) {
  check_video(video);
  const int rate = frame_rate(video, fps);
  const char* tmpdir = std::getenv("TMPDIR");
  std::string dir = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/dcrt-frames-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) throw HostError("cannot create a temporary folder for the frames in " + dir);
  const std::string tmp = mp4 + ".partial.mp4";
  int rc = 0;
  try {
    write_pngs(video, dir);
    rc = spawn({"ffmpeg", "-loglevel", "error", "-y", "-framerate", std::to_string(rate), "-i", dir + "/%03d.png",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp});
  } catch (...) {
    remove_pngs(video, dir);
    throw;
  }
  remove_pngs(video, dir);
  if (rc == -1) return false;
  if (rc != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("ffmpeg could not encode " + mp4 + " (exit code " + std::to_string(rc) + ")");
  }
  if (std::rename(tmp.c_str(), mp4.c_str()) != 0) throw HostError("cannot rename " + tmp + " to " + mp4);
  return true;
}

}  // namespace

void write_frames(const Video& video, const std::string& dir) {
  check_video(video);
  struct stat st{};
  if (stat(dir.c_str(), &st) == 0) throw HostError(dir + " already exists: choose another --out or remove it");
  const std::string tmp = dir + ".partial";
  if (mkdir(tmp.c_str(), 0777) != 0) throw HostError("cannot create " + tmp);
  try {
    write_pngs(video, tmp);
  } catch (...) {
    rmdir(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), dir.c_str()) != 0) throw HostError("cannot rename " + tmp + " to " + dir);
}

bool write_mp4(const Video& video, const std::string& path, int fps) { return ffmpeg_encode(video, path, fps); }

std::vector<uint8_t> encode_mp4(const Video& video, int fps) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string dir = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/dcrt-mp4-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) throw HostError("cannot create a temporary folder in " + dir);
  const std::string path = dir + "/video.mp4";
  bool written = false;
  std::string bytes;
  try {
    written = ffmpeg_encode(video, path, fps);
    if (written) bytes = dcrt_host::read_text(path);
  } catch (...) {
    std::remove(path.c_str());
    rmdir(dir.c_str());
    throw;
  }
  std::remove(path.c_str());
  rmdir(dir.c_str());
  if (!written) throw std::runtime_error("no ffmpeg on PATH: cannot encode an mp4");
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

}  // namespace dcrt
