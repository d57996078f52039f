// Renders /openapi.json with the Swagger UI bundled beside this file: no CDN, so the page works
// with no internet access. A separate file because the CSP allows no inline script.
window.addEventListener('DOMContentLoaded', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    // The default validator is a remote service (validator.swagger.io): never call it.
    validatorUrl: null,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
  });
});
