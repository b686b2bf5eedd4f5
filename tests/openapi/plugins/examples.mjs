// A Redocly plugin with one rule, `examples/operation-examples`: every
// operation shows an example of everything it takes and gives, so that
// Swagger UI's "Try it out", generated clients' docs and schemathesis'
// `examples` phase have a real value to start from.
//
// An example counts when it is on the parameter or media type itself, on its
// schema, or, for an array, on the schema of its items (a list of things is
// illustrated by its item). `$ref`s are followed.

function hasExample(node) {
  return node != null && typeof node === 'object' && (node.example !== undefined || node.examples !== undefined);
}

function OperationExamples() {
  return {
    Operation: {
      enter(operation, ctx) {
        const resolve = (node) => (node && node.$ref ? ctx.resolve(node).node : node);
        const schemaHasExample = (schemaNode) => {
          const schema = resolve(schemaNode);
          if (hasExample(schema)) return true;
          return schema != null && schema.items !== undefined && hasExample(resolve(schema.items));
        };
        const report = (message, path) => ctx.report({ message, location: ctx.location.child(path).key() });

        (operation.parameters || []).forEach((p, i) => {
          const param = resolve(p);
          if (!hasExample(param) && !schemaHasExample(param.schema)) {
            report(`Parameter \`${param.name}\` has no example.`, ['parameters', i]);
          }
        });

        const content = (node) => Object.entries((resolve(node) || {}).content || {});
        for (const [mediaType, media] of content(operation.requestBody)) {
          if (!hasExample(media) && !schemaHasExample(media.schema)) {
            report(`The ${mediaType} request body has no example.`, ['requestBody', 'content', mediaType]);
          }
        }
        for (const [status, response] of Object.entries(operation.responses || {})) {
          for (const [mediaType, media] of content(response)) {
            if (!hasExample(media) && !schemaHasExample(media.schema)) {
              report(`The ${status} ${mediaType} response has no example.`, ['responses', status, 'content', mediaType]);
            }
          }
        }
      },
    },
  };
}

export default function examplesPlugin() {
  return {
    id: 'examples',
    rules: {
      oas3: { 'operation-examples': OperationExamples },
    },
  };
}
