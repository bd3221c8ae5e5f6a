"""Streaming inference on vLLM (ms-swift's `inference_stream_vllm` example)."""

from swiftcli import ModelType, get_default_template_type, get_template, get_vllm_engine, inference_stream_vllm

if __name__ == "__main__":  # vLLM spawns worker processes
    model_type = ModelType.smollm2_135m_instruct
    llm_engine = get_vllm_engine(model_type)
    template_type = get_default_template_type(model_type)
    template = get_template(template_type, llm_engine.hf_tokenizer)
    llm_engine.generation_config.max_new_tokens = 256

    request_list = [{'query': '你好!'}, {'query': '浙江的省会在哪？'}]
    gen = inference_stream_vllm(llm_engine, template, request_list)
    query_list = [request['query'] for request in request_list]
    print(f"query_list: {query_list}")
    for resp_list in gen:
        response_list = [resp['response'] for resp in resp_list]
        print(f'response_list: {response_list}')

    history1 = resp_list[1]['history']
    request_list = [{'query': '这有什么好吃的', 'history': history1}]
    gen = inference_stream_vllm(llm_engine, template, request_list)
    query = request_list[0]['query']
    print_idx = 0
    print(f'query: {query}\nresponse: ', end='')
    for resp_list in gen:
        response = resp_list[0]['response']
        print(response[print_idx:], end='', flush=True)
        print_idx = len(response)
    print()
    history = resp_list[0]['history']
    print(f'history: {history}')
