// Small helpers of the HTTP front's handlers: JSON bodies in and out, OpenAI error responses.
#pragma once

#include <string>

#include <httplib.h>

#include "nlohmann/json.hpp"
#include "server/openai/api_error.h"

namespace stepserve::server::openai {

void SendJson(httplib::Response& res, const nlohmann::ordered_json& body, int status = 200);
void SendError(httplib::Response& res, const ApiError& error);

// The request body as JSON; false and an error (400, code invalid_json, saying where) when it does not parse.
bool ParseJsonBody(const httplib::Request& req, nlohmann::ordered_json* body, ApiError* error);

// `model` of a request body: absent, null, empty or `served`; otherwise false and a 404 (model_not_found).
bool CheckModel(const nlohmann::ordered_json& body, const std::string& served, ApiError* error);

}  // namespace stepserve::server::openai
