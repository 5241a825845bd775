#include "server/openai/http_util.h"

#include "absl/strings/str_cat.h"

namespace stepserve::server::openai {

void SendJson(httplib::Response& res, const nlohmann::ordered_json& body, int status) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace), "application/json");
}

void SendError(httplib::Response& res, const ApiError& error) {
  nlohmann::ordered_json body = error.ToJson();
  body["error"]["code"] = error.code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(error.code);
  SendJson(res, body, error.http_status);
}

bool ParseJsonBody(const httplib::Request& req, nlohmann::ordered_json* body, ApiError* error) {
  try {
    *body = nlohmann::ordered_json::parse(req.body);
    return true;
  } catch (const nlohmann::json::parse_error& e) {
    *error = BadRequest("", absl::StrCat("the request body is not valid JSON: ", e.what()), "invalid_json");
    return false;
  }
}

bool CheckModel(const nlohmann::ordered_json& body, const std::string& served, ApiError* error) {
  auto it = body.find("model");
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_string()) {
    *error = BadRequest("model", "must be a string");
    return false;
  }
  const std::string& model = it->get_ref<const std::string&>();
  if (model.empty() || model == served) return true;
  *error = ApiError();
  error->http_status = 404;
  error->param = "model";
  error->code = "model_not_found";
  error->message = absl::StrCat("The model `", model, "` does not exist; this server serves `", served, "`.");
  return false;
}

}  // namespace stepserve::server::openai
