// dcrt_host: image-to-video on a dcrt bundle without Python (cpp_host/README.md).
//   dcrt_host --bundle DIR --image IMG.png --tokens TOKENS.npy --noise NOISE.npy --out FRAMES_DIR [options]
// Every failure is one line on stderr and exit code 2 (bad input) or 1 (a failure while running).
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "errors.h"
#include "files.h"
#include "host.h"

extern char** environ;

using namespace dcrt_host;

namespace {

const char* kUsage =
    "usage: dcrt_host --bundle DIR --image IMAGE.png --tokens TOKENS.npy --noise NOISE.npy --out FRAMES_DIR\n"
    "                 [--steps N] [--timestep-spacing S] [--eta E] [--guidance-scale G]\n"
    "                 [--image-guidance-scale S] [--guidance-rescale R] [--frame-stride F]\n"
    "                 [--device cpu|cuda (default: the bundle's)] [--mp4 VIDEO.mp4] [--fps N]\n"
    "Sampling settings and --fps default to the ones the bundle's manifest records (those of `dcrt animate`).\n"
    "Writes FRAMES_DIR/frame_000.png ...; --mp4 also encodes them with the ffmpeg on PATH.\n"
    "TOKENS.npy: `dcrt tokenize`; NOISE.npy: `dcrt noise` (same --steps, --eta, --timestep-spacing).\n";

struct Args {
  std::string bundle, image, tokens, noise, out, mp4, device;
  std::optional<int> fps;  // else the bundle's
  std::map<std::string, std::string> sampling;  // sampling flag -> value: overrides of the bundle's defaults
};

double number(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0') throw HostError(flag + " takes a number, got \"" + value + "\"");
  return v;
}

using Setter = std::function<void(SamplingOptions&, const std::string&)>;

// The sampling flags, each setting one field of the bundle's defaults.
const std::map<std::string, Setter>& sampling_flags() {
  static const std::map<std::string, Setter> flags = {
      {"--steps", [](SamplingOptions& s, const std::string& v) { s.steps = static_cast<int>(number("--steps", v)); }},
      {"--timestep-spacing", [](SamplingOptions& s, const std::string& v) { s.timestep_spacing = v; }},
      {"--eta", [](SamplingOptions& s, const std::string& v) { s.eta = number("--eta", v); }},
      {"--frame-stride",
       [](SamplingOptions& s, const std::string& v) {
         s.frame_stride = static_cast<int64_t>(number("--frame-stride", v));
       }},
      {"--guidance-scale",
       [](SamplingOptions& s, const std::string& v) { s.guidance.guidance_scale = number("--guidance-scale", v); }},
      {"--guidance-rescale",
       [](SamplingOptions& s, const std::string& v) { s.guidance.guidance_rescale = number("--guidance-rescale", v); }},
      {"--image-guidance-scale",
       [](SamplingOptions& s, const std::string& v) {
         s.guidance.image_guidance_scale = number("--image-guidance-scale", v);
         s.guidance.image_guidance = s.guidance.image_guidance_scale != 1.0;  // as dcrt.families.dynamicrafter.pipeline.guidance_for
       }},
  };
  return flags;
}

Args parse(int argc, char** argv) {
  Args a;
  const std::map<std::string, std::function<void(const std::string&)>> flags = {
      {"--bundle", [&](const std::string& v) { a.bundle = v; }},
      {"--image", [&](const std::string& v) { a.image = v; }},
      {"--tokens", [&](const std::string& v) { a.tokens = v; }},
      {"--noise", [&](const std::string& v) { a.noise = v; }},
      {"--out", [&](const std::string& v) { a.out = v; }},
      {"--mp4", [&](const std::string& v) { a.mp4 = v; }},
      {"--device", [&](const std::string& v) { a.device = v; }},
      {"--fps", [&](const std::string& v) { a.fps = static_cast<int>(number("--fps", v)); }},
  };
  for (int k = 1; k < argc; ++k) {
    const std::string flag = argv[k];
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    const auto it = flags.find(flag);
    const bool sampling = sampling_flags().count(flag) > 0;
    if (it == flags.end() && !sampling) throw HostError("unknown option " + flag + " (see --help)");
    if (k + 1 >= argc) throw HostError(flag + " needs a value");
    const std::string value = argv[++k];
    if (sampling) {
      SamplingOptions check;
      sampling_flags().at(flag)(check, value);  // a malformed number fails here, before any work
      a.sampling[flag] = value;
    } else {
      it->second(value);
    }
  }
  const std::map<std::string, std::string> required = {
      {"--bundle", a.bundle}, {"--image", a.image}, {"--tokens", a.tokens}, {"--noise", a.noise}, {"--out", a.out}};
  for (const auto& [flag, value] : required)
    if (value.empty()) throw HostError(flag + " is required (see --help)");
  return a;
}

// The bundle's defaults with the command line's flags applied. A TensorRT manifest has no defaults: then every
// sampling flag but --image-guidance-scale must be given.
SamplingOptions sampling_options(const Bundle& bundle, const std::map<std::string, std::string>& given) {
  SamplingOptions s = bundle.sampling.value_or(SamplingOptions{});
  if (!bundle.sampling) {
    for (const auto& [flag, setter] : sampling_flags())
      if (flag != "--image-guidance-scale" && given.count(flag) == 0)
        throw HostError(bundle.dir + "/manifest.json records no sampling defaults: pass " + flag);
  }
  for (const auto& [flag, value] : given) sampling_flags().at(flag)(s, value);
  if (s.steps < 1) throw HostError("--steps must be >= 1");
  if (s.eta < 0.0) throw HostError("--eta must be >= 0");
  return s;
}

// --fps, else the bundle's. A manifest without one (TensorRT, or an AOTInductor bundle built before dcrt recorded
// it) needs the flag, as it needs the sampling flags.
int frame_rate(const Bundle& bundle, const std::optional<int>& given) {
  if (given) {
    if (*given < 1) throw HostError("--fps must be >= 1");
    return *given;
  }
  if (!bundle.fps)
    throw HostError(bundle.dir +
                    "/manifest.json records no fps: pass --fps (`dcrt build --engine aoti` again records it)");
  return *bundle.fps;
}

std::string frame_name(int k) {
  char name[32];
  std::snprintf(name, sizeof(name), "frame_%03d.png", k);
  return name;
}

// Frames go to a temporary folder renamed to `out` at the end: a failed run leaves no partial folder.
void write_frames(const Video& video, const std::string& out) {
  struct stat st{};
  if (stat(out.c_str(), &st) == 0) throw HostError(out + " already exists: choose another --out or remove it");
  const std::string tmp = out + ".partial";
  if (mkdir(tmp.c_str(), 0777) != 0) throw HostError("cannot create " + tmp);
  const size_t frame = static_cast<size_t>(video.height) * video.width * 3;
  try {
    for (int k = 0; k < video.frames; ++k)
      write_png_rgb(tmp + "/" + frame_name(k), video.rgb.data() + k * frame, video.height, video.width);
  } catch (...) {
    for (int k = 0; k < video.frames; ++k) std::remove((tmp + "/" + frame_name(k)).c_str());
    rmdir(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), out.c_str()) != 0) throw HostError("cannot rename " + tmp + " to " + out);
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

// H.264 in yuv420p (what players expect, as dcrt.video writes it), encoded to a temporary name and renamed.
void write_mp4(const std::string& frames_dir, const std::string& mp4, int fps) {
  const std::string tmp = mp4 + ".partial.mp4";
  const int rc = spawn({"ffmpeg", "-loglevel", "error", "-y", "-framerate", std::to_string(fps), "-i",
                        frames_dir + "/frame_%03d.png", "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp});
  if (rc == -1) {
    std::fprintf(stderr, "dcrt_host: no ffmpeg on PATH: wrote the PNG frames only, not %s\n", mp4.c_str());
    return;
  }
  if (rc != 0) {
    std::remove(tmp.c_str());
    throw HostError("ffmpeg could not encode " + mp4 + " (exit code " + std::to_string(rc) + ")");
  }
  if (std::rename(tmp.c_str(), mp4.c_str()) != 0) throw HostError("cannot rename " + tmp + " to " + mp4);
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  const auto start = std::chrono::steady_clock::now();
  const Bundle bundle = read_bundle(args.bundle);
  const int fps = args.mp4.empty() ? 0 : frame_rate(bundle, args.fps);  // before the work: a missing one fails now
  const Device device = device_from_name(args.device.empty() ? bundle.device : args.device);
  HostInputs inputs{read_png_rgb(args.image), read_npy(args.tokens), read_npy(args.noise)};
  const std::unique_ptr<Engine> engine = open_engine(bundle, device);
  const Video video = generate(bundle, *engine, sampling_options(bundle, args.sampling), inputs);
  write_frames(video, args.out);
  if (!args.mp4.empty()) write_mp4(args.out, args.mp4, fps);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "dcrt_host: %d frames of %dx%d from %s (%s, %s) in %.1f s -> %s\n", video.frames, video.width,
               video.height, bundle.dir.c_str(), bundle.engine_kind.c_str(), device == Device::kCPU ? "cpu" : "cuda",
               seconds, args.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const HostError& e) {
    std::fprintf(stderr, "dcrt_host: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dcrt_host: failed: %s\n", e.what());
    return 1;
  }
}
