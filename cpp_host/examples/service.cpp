// dcrt_host_service: an example HTTP service over the library (include/dcrt/host.h) with cpp-httplib.
//   dcrt_host_service --bundle DIR [--host 127.0.0.1] [--port 8080 (0: any free port)] [--device cpu|cuda]
// It opens the bundle once, prints "listening on http://HOST:PORT" on stdout, then serves:
//   POST /animate  JSON {"image": base64 PNG/JPEG, "prompt": "...", "seed": N, and optionally "steps", "eta",
//                  "guidance_scale", "image_guidance_scale", "guidance_rescale", "frame_stride",
//                  "timestep_spacing", "fps"}  ->  200 video/mp4 (H.264 through the ffmpeg on PATH)
//   GET /health    -> 200 "ok"
// A bad request gets a 4xx and one line of text/plain saying what to fix; the service carries on. The engine runs
// one request at a time (dcrt::Engine's mutex); the others wait in httplib's thread pool.
#include <dcrt/host.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>

namespace {

using Json = nlohmann::json;

constexpr size_t kMaxRequestBytes = 64 << 20;  // a base64 image of ~48 MB

// RFC 4648 base64 (the standard alphabet, padding optional, whitespace skipped). Hand-written: cpp-httplib has only
// an encoder, and OpenSSL's EVP_DecodeBlock would be a dependency for twenty lines.
std::vector<uint8_t> base64_decode(const std::string& text) {
  std::vector<uint8_t> out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int v = -1;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    else throw dcrt::UsageError("\"image\" is not base64 (character '" + std::string(1, c) + "')");
    bits = (bits << 6) | static_cast<uint32_t>(v);
    if ((count += 6) >= 8) {
      count -= 8;
      out.push_back(static_cast<uint8_t>((bits >> count) & 0xFF));
    }
  }
  return out;
}

template <typename T>
std::optional<T> optional_field(const Json& body, const char* name) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  try {
    return body[name].get<T>();
  } catch (const Json::exception&) {
    throw dcrt::UsageError(std::string("\"") + name + "\" has the wrong type");
  }
}

struct Request {
  dcrt::Image image;
  std::string prompt;
  uint64_t seed = 0;
  dcrt::Sampling sampling;
  int fps = 0;
};

Request parse_request(const std::string& text) {
  Json body;
  try {
    body = Json::parse(text);
  } catch (const Json::exception&) {
    throw dcrt::UsageError("the body is not JSON: send {\"image\": base64, \"prompt\": ..., \"seed\": ...}");
  }
  if (!body.is_object()) throw dcrt::UsageError("the body must be a JSON object");
  static const char* kFields[] = {"image", "prompt", "seed", "steps", "eta", "guidance_scale", "image_guidance_scale",
                                  "guidance_rescale", "frame_stride", "timestep_spacing", "fps"};
  for (const auto& [name, value] : body.items())
    if (std::find_if(std::begin(kFields), std::end(kFields), [&](const char* f) { return name == f; }) ==
        std::end(kFields))
      throw dcrt::UsageError("unknown field \"" + name + "\"");
  Request r;
  const auto image = optional_field<std::string>(body, "image");
  if (!image) throw dcrt::UsageError("\"image\" is required: a PNG or JPEG file, base64");
  r.image = dcrt::decode_image(base64_decode(*image), "\"image\"");
  r.prompt = optional_field<std::string>(body, "prompt").value_or("");
  const auto seed = optional_field<uint64_t>(body, "seed");
  if (!seed) throw dcrt::UsageError("\"seed\" is required: an integer from 0 to 2**64 - 1");
  r.seed = *seed;
  dcrt::Sampling& s = r.sampling;
  s.steps = optional_field<int>(body, "steps");
  s.eta = optional_field<double>(body, "eta");
  s.guidance_scale = optional_field<double>(body, "guidance_scale");
  s.image_guidance_scale = optional_field<double>(body, "image_guidance_scale");
  s.guidance_rescale = optional_field<double>(body, "guidance_rescale");
  s.frame_stride = optional_field<int64_t>(body, "frame_stride");
  s.timestep_spacing = optional_field<std::string>(body, "timestep_spacing");
  r.fps = optional_field<int>(body, "fps").value_or(0);
  if (r.fps < 0) throw dcrt::UsageError("\"fps\" must be >= 1");
  return r;
}

void reply_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(message + "\n", "text/plain");
}

struct Args {
  std::string bundle, host = "127.0.0.1", device;
  int port = 8080;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int k = 1; k < argc; ++k) {
    const std::string flag = argv[k];
    if (k + 1 >= argc) throw dcrt::UsageError(flag + " needs a value (see the top of examples/service.cpp)");
    const std::string value = argv[++k];
    if (flag == "--bundle") a.bundle = value;
    else if (flag == "--host") a.host = value;
    else if (flag == "--device") a.device = value;
    else if (flag == "--port") a.port = std::atoi(value.c_str());
    else throw dcrt::UsageError("unknown option " + flag + " (--bundle, --host, --port, --device)");
  }
  if (a.bundle.empty()) throw dcrt::UsageError("--bundle is required");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<dcrt::Engine> engine;
  Args args;
  try {
    args = parse_args(argc, argv);
    engine = dcrt::Engine::open(args.bundle, args.device);
  } catch (const dcrt::UsageError& e) {
    std::fprintf(stderr, "dcrt_host_service: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dcrt_host_service: failed: %s\n", e.what());
    return 1;
  }
  httplib::Server server;
  server.set_payload_max_length(kMaxRequestBytes);
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  server.Post("/animate", [&](const httplib::Request& req, httplib::Response& res) {
    try {
      const Request r = parse_request(req.body);
      const dcrt::Video video = engine->animate(r.image, r.prompt, r.seed, r.sampling);
      const std::vector<uint8_t> mp4 = dcrt::encode_mp4(video, r.fps);
      res.set_content(std::string(mp4.begin(), mp4.end()), "video/mp4");
    } catch (const dcrt::UsageError& e) {
      reply_error(res, 400, e.what());
    } catch (const std::exception& e) {
      reply_error(res, 500, std::string("failed: ") + e.what());
    }
  });
  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    std::fprintf(stderr, "dcrt_host_service: %s %s -> %d\n", req.method.c_str(), req.path.c_str(), res.status);
  });
  const int port =
      args.port == 0 ? server.bind_to_any_port(args.host) : (server.bind_to_port(args.host, args.port) ? args.port : -1);
  if (port < 0) {
    std::fprintf(stderr, "dcrt_host_service: cannot listen on %s:%d\n", args.host.c_str(), args.port);
    return 1;
  }
  std::cout << "listening on http://" << args.host << ":" << port << std::endl;
  std::fprintf(stderr, "dcrt_host_service: %s\n", engine->describe().c_str());
  return server.listen_after_bind() ? 0 : 1;
}
